"""The comparison row: one (suite, split, metric) of candidate vs baseline, frozen and typed.

The comparison is computed on plain dicts (multiplicity and the adaptive refinement fill them in
steps) and frozen into `ComparisonRow`s once it is done; report, gate, cards and trackers read the
attributes. `to_dict()` is the row exactly as comparison.json stores it, key order included, and
`from_dict()` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from collections.abc import Iterator, Mapping
from typing import Any

from aligneval.errors import ArtifactError

# keys written only when the row has them, each after the key named here (comparison.json order)
OPTIONAL = ("seeds", "note", "p_mc_se", "p_settled")


@dataclass(frozen=True)
class ComparisonRow(Mapping):
    """Candidate - baseline on one metric of one split.

    `p_value` is adjusted within `family` (`adjust`: holm, bh, none); `p_value_raw` is the test's own.
    `verdict`: better / worse / no-difference / insufficient (with `verdict_reason`) / n/a.
    `p_floor`: no resample crossed zero, so p is the bound 2 / (R + 1). Rows whose p came from a
    refinable bootstrap carry `p_mc_se` (`refinable`) and, when tested, `p_settled`.
    """

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
    method: str
    verdict: str
    higher_is_better: bool | None
    range: tuple[float | None, float | None]
    n: int
    basis: str | None
    temperature: dict[str, float | None] | None
    resamples: int
    p_floor: bool
    extra: dict[str, Any] = field(default_factory=dict)
    p_value_raw: float | None = None
    adjust: str | None = None
    family: str | None = None
    verdict_reason: str | None = None
    seeds: dict[str, Any] | None = None  # several seeds: per-seed values, means and sds
    note: str | None = None  # what the interval covers
    p_mc_se: float | None = None  # Monte-Carlo standard error of a bootstrap p
    p_settled: bool | None = None
    refinable: bool = False  # the p came from a bootstrap the refinement could extend (writes p_mc_se)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.suite, self.split, self.metric)

    @property
    def testable(self) -> bool:
        """It can carry a verdict: a p-value and a direction."""
        return self.p_value_raw is not None and self.higher_is_better is not None

    def to_dict(self) -> dict[str, Any]:
        """The comparison.json row (same keys, same order as the stored file)."""
        d: dict[str, Any] = {}
        for name in _ORDER:
            if name == "seeds" and self.seeds is None:
                continue
            if name == "note" and self.note is None:
                continue
            if name == "p_mc_se" and not self.refinable:
                continue
            if name == "p_settled" and self.p_settled is None:
                continue
            value = getattr(self, name)
            d[name] = list(value) if name == "range" else value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ComparisonRow":
        """A row from comparison.json (or from the comparison's working dict). Rows of older files may
        lack the later fields (they get their defaults) or carry retired ones (ignored; an old
        `min_n_ok: false` becomes the verdict reason); a row without the core fields is an ArtifactError."""
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ArtifactError(f"comparison row {d.get('metric', '?')!r} lacks {', '.join(missing)}")
        values = {k: d[k] for k in _FIELDS if k in d}
        values["range"] = tuple(d.get("range") or (None, None))
        for k, default in _DEFAULTS.items():
            values.setdefault(k, default() if callable(default) else default)
        if d.get("min_n_ok") is False and not values.get("verdict_reason"):
            values["verdict_reason"] = "sample below the minimum size: no verdict"
        return cls(**values, refinable="p_mc_se" in d)

    # the old dict form (`row["delta"]`, `row.get("verdict_reason")`, `set(row)`): a read-only view of
    # `to_dict()`, kept for scripts written against earlier versions; aligneval itself reads attributes
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_ORDER = ("suite", "split", "metric", "baseline_model", "candidate_model", "baseline", "candidate", "delta",
          "ci_low", "ci_high", "p_value", "method", "verdict", "higher_is_better", "range", "n", "basis",
          "temperature", "seeds", "resamples", "p_floor", "extra", "note", "p_value_raw", "adjust", "family",
          "verdict_reason", "p_mc_se", "p_settled")
_REQUIRED = ("suite", "split", "metric", "baseline", "candidate", "delta", "verdict")
_DEFAULTS: dict[str, Any] = {"baseline_model": "", "candidate_model": "", "ci_low": None, "ci_high": None,
                             "p_value": None, "method": "", "higher_is_better": None, "n": 0, "basis": None,
                             "temperature": None, "resamples": 0, "p_floor": False, "extra": dict}
_FIELDS = frozenset(_ORDER)


def freeze(rows: list[dict[str, Any]]) -> list[ComparisonRow]:
    """The finished working dicts of a comparison as typed rows."""
    return [ComparisonRow.from_dict(r) for r in rows]
