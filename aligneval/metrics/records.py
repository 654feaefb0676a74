"""Turn metric values into `Record`s with the metric's metadata, so suites never restate directions."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from aligneval.errors import UsageError
from aligneval.metrics.base import get_metric
from aligneval.records import Record


def check_metric_names(names: Iterable[str], recomputable: bool = True) -> None:
    """Raise UsageError for an unknown metric (with did-you-mean) or one that needs two splits."""
    if isinstance(names, str):
        raise UsageError(f"metrics: expected a list of names, got the string '{names}'")
    for name in names:
        metric = get_metric(name)
        if recomputable and not metric.recomputable:
            raise UsageError(f"metric '{name}' cannot be computed on one split's predictions")


def metric_record(name: str, suite: str, split: str, model: str, probs: np.ndarray, labels: np.ndarray,
                  *, temperature: float | None = None, prefix: str = "", extra: dict[str, Any] | None = None) -> Record:
    """Compute `name` on (probs, labels) -> Record with basis="predictions". `probs` must already
    have the temperature applied when `temperature` is given; NaN (undefined) becomes value None."""
    metric = get_metric(name)
    value = metric(probs, labels)
    info = dict(extra or {})
    if math.isnan(value):
        value, info["undefined"] = None, "metric undefined on this split (e.g. no errors or no correct predictions)"
    return Record(suite=suite, split=split, model=model, metric=f"{prefix}{metric.name}", value=value,
                  n=int(len(labels)), higher_is_better=metric.higher_is_better, range=tuple(metric.range),
                  basis="predictions", temperature=temperature, extra=info)
