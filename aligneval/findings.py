"""What a run's comparison found, as typed comparison rows read from comparison.json.

The model card, the experiment trackers and the gate's annotations all publish these, never a number
of their own: one comparison.json, one value and one verdict everywhere (docs/design.md, "Where
results go"). A stored comparison is used only while the results.json it was computed from is
unchanged (same sha256); otherwise `aligneval report` must be re-run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligneval.compare import stored
from aligneval.compare import Comparison, ComparisonRow, input_fingerprints, load
from aligneval.errors import ArtifactError
from aligneval.gate import default_comparisons


@dataclass
class StoredComparison:
    """One candidate against the baseline, as comparison.json holds it."""

    path: Path
    baseline: str
    candidate: str
    settings: dict[str, Any]
    findings: list[ComparisonRow]
    comparison: Comparison  # the same rows as aligneval.compare's type, for the report's sentence helpers
    against: bool = False  # the baseline came from another run (`--against`)

    @property
    def confidence(self) -> float:
        """The level of every interval of this comparison."""
        return float(self.settings.get("confidence", 0.95))

    def find(self, suite: str, split: str, metric: str) -> ComparisonRow | None:
        return next((f for f in self.findings if (f.suite, f.split, f.metric) == (suite, split, metric)), None)

    def involves(self, model: str) -> bool:
        """Whether `model` (a name or a seed `name@13`) of this run is on either side of this comparison
        (with `--against`, the baseline side is the other run's model)."""
        group = model.split("@", 1)[0]
        if group == self.candidate.split("@", 1)[0]:
            return True
        return not self.against and group == self.baseline.split("@", 1)[0]


def locate(run: str | Path, comparison: str | Path | None = None) -> Path:
    """The comparison.json to read: `comparison` when given, else the first that exists where the gate
    looks (aligneval.gate.default_comparisons); none -> ArtifactError saying how to make one."""
    if comparison is not None:
        if not Path(comparison).is_file():
            raise ArtifactError(f"comparison not found: {comparison}")
        return Path(comparison)
    candidates = default_comparisons(run)
    for path in candidates:
        if path.is_file():
            return path
    raise ArtifactError(f"no comparison.json for {run} (looked in {', '.join(str(p) for p in candidates)}); "
                        f"run `aligneval report {run}` first, or pass --comparison")


def read(run: str | Path, comparison: str | Path | None = None) -> list[StoredComparison]:
    """Every comparison stored for `run` (one per twin), checked to be computed from this results.json."""
    results = load(run)
    path = locate(run, comparison)
    now = (input_fingerprints(results).get("results") or {}).get("sha256")
    out = []
    for section in stored.read_sections(path):
        then = ((section.get("inputs") or {}).get("results") or {}).get("sha256")
        if then is None or then != now:
            raise ArtifactError(f"{path}: stale: computed from another results.json than {results.path}; "
                                f"re-run `aligneval report {run}`")
        settings = dict(section.get("settings") or {})
        baseline = settings.get("baseline", section.get("baseline", "baseline"))
        candidate = settings.get("candidate", section.get("candidate", ""))
        rows = [ComparisonRow.from_dict(r) for r in section["records"]]
        against = ((section.get("inputs") or {}).get("against") or {}).get("path")
        base_results = load(against) if against and Path(against).is_file() else results
        comp = Comparison(baseline, candidate, rows, results, base_results, settings,
                          list(section.get("warnings") or []), dict(section.get("inputs") or {}), source=str(path))
        out.append(StoredComparison(path, baseline, candidate, settings,
                                    rows, comp, bool(against)))
    return out
