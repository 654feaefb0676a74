"""Suites: registry, lazy loading of the built-in modules and of third-party entry points.

Built-in suites live in `aligneval/suites/<name>.py` and register themselves with `@register_suite`
when imported; third parties declare an entry point in the group `aligneval.suites` whose target is a
module (or object) that registers on import. Nothing is imported until a suite is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

from aligneval.suites.base import ENTRY_POINT_GROUP, SUITES, SuiteInfo, register_suite  # noqa: F401

BUILTIN_MODULES = ("accuracy", "calibration", "ood", "uncertainty", "adversarial", "alignment")
_loaded = False


def load_suites() -> None:
    """Import every built-in suite module that exists, then the entry-point plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_MODULES:
        module = f"aligneval.suites.{name}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break the built-in suites
            warnings.warn(f"suite plugin '{ep.name}' ({ep.value}) failed to load: {type(exc).__name__}: {exc}",
                          stacklevel=2)


def get_suite(name: str) -> SuiteInfo:
    load_suites()
    return SUITES.get(name)


def suite_names() -> list[str]:
    load_suites()
    return SUITES.names()
