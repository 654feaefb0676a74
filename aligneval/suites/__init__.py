"""Suites: registry, lazy discovery of the built-in modules and of third-party plugins.

A built-in suite is one module `aligneval/suites/<name>.py` that registers itself with `@register_suite`
when imported: every module of this package is found by walking it, so adding one is adding the file.
Third parties register theirs from a plugin module (see `aligneval.plugins`). Nothing is imported
until a suite is asked for.
"""

from __future__ import annotations

import importlib
import pkgutil

from aligneval.plugins import load_plugins
from aligneval.suites.base import ENTRY_POINT_GROUP, SUITES, SuiteInfo, register_suite  # noqa: F401

NOT_SUITES = frozenset({"base"})  # modules of this package that hold no suite
_loaded = False


def builtin_modules() -> list[str]:
    """The suite modules of this package, by name (every module but the registry's)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_SUITES)


def load_suites() -> None:
    """Import every built-in suite module, then the entry-point plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in builtin_modules():
        importlib.import_module(f"{__name__}.{name}")
    load_plugins()


def get_suite(name: str) -> SuiteInfo:
    load_suites()
    return SUITES.get(name)


def suite_names() -> list[str]:
    load_suites()
    return SUITES.names()
