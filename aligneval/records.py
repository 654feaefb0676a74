"""The unit every stage exchanges: a named number keyed by (suite, split, model, metric).

Reports and gates read only these, so no stage special-cases a metric (HELM's named statistics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Record:
    """One metric value. `metric` carries its variant in the name: `ece@15`, `ts:ece@15` (after
    temperature scaling), `deepwordbug:accuracy_under_attack`.

    `basis` says how the value can be recomputed per example for paired statistics (the registry of
    bases: `aligneval.compare.bases.BASES`): "predictions" -> `aligneval.metrics.get_metric(base_name)(probs,
    labels)` on the stored predictions (with `temperature` applied when set); "attack" -> from the attack
    outcome log; "per_example" -> the mean of per-example values in the parquet `extra["values"]` (column
    `extra["column"]`, default the metric name); None -> not resamplable (shown as point values).
    """

    suite: str
    split: str
    model: str
    metric: str
    value: float | None
    n: int
    higher_is_better: bool | None
    range: tuple[float | None, float | None] = (None, None)
    basis: str | None = None
    temperature: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.split, self.model, self.metric)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["range"] = list(self.range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        d = dict(d)
        d["range"] = tuple(d.get("range") or (None, None))
        return cls(**d)


@dataclass(frozen=True)
class Curve:
    """Arrays a plot needs (reliability bins, risk-coverage), stored so plots never need a model."""

    suite: str
    split: str
    model: str
    name: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SuiteOutput:
    records: list[Record] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    # free-form per-example rows for the report (e.g. adversarial examples); texts are data, never markup
    examples: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: "SuiteOutput") -> None:
        self.records.extend(other.records)
        self.curves.extend(other.curves)
        self.examples.extend(other.examples)
