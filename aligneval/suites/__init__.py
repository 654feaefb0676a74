"""Suites: registry, lazy loading of the built-in modules and of third-party entry points.

Built-in suites live in `aligneval/suites/<name>.py` and register themselves with `@register_suite`
when imported; third parties register theirs from a plugin module (see `aligneval.plugins`). Nothing is imported until a suite is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util

from aligneval.plugins import load_plugins
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
    load_plugins()


def get_suite(name: str) -> SuiteInfo:
    load_suites()
    return SUITES.get(name)


def suite_names() -> list[str]:
    load_suites()
    return SUITES.names()
