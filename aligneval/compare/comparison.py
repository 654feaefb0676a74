"""A finished comparison: its typed rows plus what produced them; `to_doc()` is comparison.json."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from aligneval.artifacts import write_json_atomic
from aligneval.compare.rows import ComparisonRow
from aligneval.compare.runs import run_label

COMPARISON_VERSION = "1.1"


@dataclass
class Comparison:
    """Comparison records plus what produced them; `to_doc()` is comparison.json."""

    baseline: str
    candidate: str
    records: list[ComparisonRow]
    results: Any  # the candidate's run
    baseline_results: Any
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)  # what it was computed from (freshness check)
    source: str = "computed"  # or the comparison.json it was read from
    stale: list[str] = field(default_factory=list)  # stored comparisons passed over, and why

    def find(self, metric: str, split: str, suite: str | None = None) -> ComparisonRow | None:
        for r in self.records:
            if r.metric == metric and r.split == split and (suite is None or r.suite == suite):
                return r
        return None

    def with_typed_rows(self) -> "Comparison":
        """This comparison with every row a `ComparisonRow`: rows given as dicts (an older comparison's,
        or one built by hand) are read with `ComparisonRow.from_dict`."""
        if all(isinstance(r, ComparisonRow) for r in self.records):
            return self
        return replace(self, records=[r if isinstance(r, ComparisonRow) else ComparisonRow.from_dict(r)
                                      for r in self.records])

    def to_doc(self) -> dict[str, Any]:
        doc = dict(getattr(self.results, "doc", {}) or {})
        doc["comparison"] = {
            "version": COMPARISON_VERSION,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "baseline_run": run_label(self.baseline_results),
            "candidate_run": run_label(self.results),
            "settings": self.settings,
            "inputs": self.inputs,
            "warnings": self.warnings,
            "records": [r.to_dict() for r in self.records],
        }
        return doc

    def write(self, path: str | Path) -> Path:
        """Write comparison.json atomically (temporary file + rename)."""
        return write_json_atomic(Path(path), jsonable(self.to_doc()))


def jsonable(x):
    """JSON-ready: numpy scalars as Python numbers, non-finite floats as null."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x

