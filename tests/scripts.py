"""The repository's scripts (benchmarks/*.py, scripts/*.py) loaded as modules, for the tests that run
them in-process: they live outside the package, so they are loaded from their files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """A fresh module from ROOT/relative (e.g. "benchmarks/attack_speed.py"), named `name` (default: the
    file's stem); it is not put in sys.modules, so two tests may load the same script apart."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
