"""Third-party extensions, found through entry points and imported once.

A plugin is a module that registers what it adds when imported: a suite (`register_suite`), a metric,
a report section or an alignment variant. A package declares it in the entry-point group
`aligneval.plugins` (the older group `aligneval.suites` is read too). Every registry that can hold
plugin entries calls `load_plugins()` before it answers, so a plugin is one file plus one line of
packaging metadata, with no edit to aligneval.
"""

from __future__ import annotations

import warnings
from importlib import metadata

ENTRY_POINT_GROUPS = ("aligneval.plugins", "aligneval.suites")
_loaded = False


def load_plugins() -> None:
    """Import every plugin entry point (once). A broken plugin warns and never breaks the built-ins."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    seen: set[str] = set()
    for group in ENTRY_POINT_GROUPS:
        for ep in metadata.entry_points(group=group):
            if ep.value in seen:
                continue
            seen.add(ep.value)
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - one plugin's failure must not stop the others
                warnings.warn(f"aligneval plugin '{ep.name}' ({ep.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}", stacklevel=2)


def _reset_for_tests() -> None:
    global _loaded
    _loaded = False
