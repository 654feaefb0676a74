"""The Python API: the same verbs as the CLI, as plain functions, imported lazily.

    import aligneval.api as ae
    ae.align(model=..., train=..., out=...)
    results = ae.run("suites/sentiment-shift.toml", {"baseline": ..., "aligned": ...}, "runs/x")
"""

from __future__ import annotations

import importlib
from typing import Any

VERBS = {
    "align": "aligneval.align.train:align_pair",
    "run": "aligneval.runner:run",
    "attack": "aligneval.attack.runner:attack",
    "compare": "aligneval.compare:compare",
    "report": "aligneval.report:build_report",
    "gate": "aligneval.gate:gate",
    "demo": "aligneval.demo:demo",
    "load_spec": "aligneval.spec:load_spec",
    "load_results": "aligneval.results:load_results",
    "load_examples": "aligneval.data:load_examples",
}

__all__ = sorted(VERBS)


def __getattr__(name: str) -> Any:
    if name not in VERBS:
        raise AttributeError(f"module 'aligneval.api' has no attribute '{name}'")
    module, attr = VERBS[name].split(":")
    return getattr(importlib.import_module(module), attr)
