"""Report sections: the registry, and discovery of the built-in section modules and of plugins.

Every module of this package but the registry's is a section module that registers itself when
imported, so a new built-in section is one file; a third-party section is one plugin module that
calls `register_section` (see `aligneval.plugins`).
"""

from __future__ import annotations

import importlib
import pkgutil

from aligneval.plugins import load_plugins
from aligneval.report.sections.base import (  # noqa: F401 - the public API of sections
    SECTIONS,
    ReportInput,
    SectionInfo,
    register_section,
)

NOT_SECTIONS = frozenset({"base"})
_loaded = False


def load_sections() -> None:
    """Import every built-in section module, then the entry-point plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_SECTIONS):
        importlib.import_module(f"{__name__}.{module}")
    load_plugins()


def ordered_sections() -> list[SectionInfo]:
    """Every registered section, in report order (then by name)."""
    load_sections()
    return sorted((info for _, info in SECTIONS.items()), key=lambda info: (info.order, info.name))
