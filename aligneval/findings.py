"""What a run's comparison found, as typed records read from comparison.json.

The model card, the experiment trackers and the gate's annotations all publish these, never a number
of their own: one comparison.json, one value and one verdict everywhere (docs/design.md, "Where
results go"). A stored comparison is used only while the results.json it was computed from is
unchanged (same sha256); otherwise `aligneval report` must be re-run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aligneval.compare import stored as comparison_file
from aligneval.compare import Comparison, input_fingerprints, load
from aligneval.errors import ArtifactError
from aligneval.formatting import fmt, fmt_ci, fmt_delta, fmt_p
from aligneval.gate import default_comparisons


@dataclass(frozen=True)
class Finding:
    """One comparison row: candidate − baseline on one (suite, split, metric)."""

    suite: str
    split: str
    metric: str
    baseline_model: str
    candidate_model: str
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_value_raw: float | None
    adjust: str | None
    verdict: str
    n: int
    method: str
    higher_is_better: bool | None
    confidence: float

    @classmethod
    def from_row(cls, row: dict[str, Any], confidence: float) -> "Finding":
        return cls(suite=row["suite"], split=row["split"], metric=row["metric"],
                   baseline_model=row.get("baseline_model", ""), candidate_model=row.get("candidate_model", ""),
                   baseline=row.get("baseline"), candidate=row.get("candidate"), delta=row.get("delta"),
                   ci_low=row.get("ci_low"), ci_high=row.get("ci_high"), p_value=row.get("p_value"),
                   p_value_raw=row.get("p_value_raw"), adjust=row.get("adjust"), verdict=row["verdict"],
                   n=int(row.get("n") or 0), method=row.get("method", ""),
                   higher_is_better=row.get("higher_is_better"), confidence=float(confidence))

    @property
    def key(self) -> str:
        """`suite/metric/split`, the name trackers and the card use for this row."""
        return f"{self.suite}/{self.metric}/{self.split}"

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.ci_low is None or self.ci_high is None else (self.ci_low, self.ci_high)

    def sentence(self) -> str:
        """`accuracy [test]: Δ +0.0100 (95% CI [−0.0300, +0.0500]), p = 0.412: no difference`."""
        ci = fmt_ci(self.ci_low, self.ci_high)
        interval = f" ({self.confidence:.0%} CI {ci})" if ci else ""
        p = f", p = {fmt_p(self.p_value)}" if self.p_value is not None else ""
        return (f"{self.metric} [{self.split}]: {fmt(self.baseline)} → {fmt(self.candidate)}, "
                f"Δ {fmt_delta(self.delta)}{interval}{p}: {self.verdict}")


@dataclass
class StoredComparison:
    """One candidate against the baseline, as comparison.json holds it."""

    path: Path
    baseline: str
    candidate: str
    settings: dict[str, Any]
    findings: list[Finding]
    comparison: Comparison  # the same rows as aligneval.compare's type, for the report's sentence helpers
    against: bool = False  # the baseline came from another run (`--against`)

    def find(self, suite: str, split: str, metric: str) -> Finding | None:
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
    for section in comparison_file.read_sections(path):
        then = ((section.get("inputs") or {}).get("results") or {}).get("sha256")
        if then is None or then != now:
            raise ArtifactError(f"{path}: stale: computed from another results.json than {results.path}; "
                                f"re-run `aligneval report {run}`")
        settings = dict(section.get("settings") or {})
        confidence = float(settings.get("confidence", 0.95))
        baseline = settings.get("baseline", section.get("baseline", "baseline"))
        candidate = settings.get("candidate", section.get("candidate", ""))
        records = list(section["records"])
        against = ((section.get("inputs") or {}).get("against") or {}).get("path")
        base_results = load(against) if against and Path(against).is_file() else results
        comp = Comparison(baseline, candidate, records, results, base_results, settings,
                          list(section.get("warnings") or []), dict(section.get("inputs") or {}), source=str(path))
        out.append(StoredComparison(path, baseline, candidate, settings,
                                    [Finding.from_row(r, confidence) for r in records], comp, bool(against)))
    return out
