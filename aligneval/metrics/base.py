"""Metric metadata and the registry. A metric is a pure function over (probs [n, k], labels [n]).

Names carry their variant: `ece@15` is ECE with 15 bins. A family (`ece`) is registered once with a
factory taking the bin count, so `get_metric("ece@10")` builds the 10-bin metric on demand and
`get_metric("ece")` means the default `ece@15`.

A metric carries everything the rest of aligneval says about it: direction (`higher_is_better`),
the report's label and its place in the report's tables (`order`, lower first). A plugin metric is
one module calling `register_metric` (see `aligneval.plugins`); lookups load the plugins first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from aligneval.errors import UsageError
from aligneval.plugins import load_plugins
from aligneval.registry import Registry, did_you_mean

MetricFn = Callable[[np.ndarray, np.ndarray], float]
DEFAULT_BINS = 15
UNRANKED = math.inf


@dataclass(frozen=True)
class Metric:
    """A named number with the metadata reports and gates read instead of special-casing names.

    `fn` is None for metrics that are not a function of one (probs, labels) pair (e.g. MSP AUROC
    between an in-domain and an out-of-domain split); those still need a direction and a range.
    """

    name: str
    fn: MetricFn | None
    higher_is_better: bool
    range: tuple[float | None, float | None]
    description: str = ""
    params: dict = field(default_factory=dict)
    label: str = ""  # how reports name it ("" -> the name, underscores as spaces)
    order: float = UNRANKED  # its place in the report's tables, lower first; unranked ones last, by name

    @property
    def recomputable(self) -> bool:
        return self.fn is not None

    def __call__(self, probs, labels) -> float:
        if self.fn is None:
            raise UsageError(f"metric '{self.name}' is not a function of one split's predictions")
        probs, labels = check_inputs(probs, labels, self.name)
        return float(self.fn(probs, labels))


@dataclass(frozen=True)
class Family:
    """A parametrized metric: `factory(bins)` returns the metric named `<family>@<bins>`."""

    name: str
    factory: Callable[[int], Metric]
    default: int = DEFAULT_BINS


_PLAIN: Registry[Metric] = Registry("metric")
_FAMILIES: Registry[Family] = Registry("metric family")


def register_metric(metric: Metric) -> Metric:
    if metric.name in _FAMILIES:
        raise ValueError(f"metric '{metric.name}' is registered twice")
    _PLAIN.add(metric.name, metric)
    return metric


def register_family(name: str, default: int = DEFAULT_BINS):
    def decorator(factory: Callable[[int], Metric]):
        if name in _PLAIN:
            raise ValueError(f"metric family '{name}' is registered twice")
        _FAMILIES.add(name, Family(name, factory, default))
        return factory

    return decorator


def metric_names() -> list[str]:
    """Every plain metric plus every family at its default bin count."""
    load_plugins()
    return sorted(_PLAIN.names() + [f"{f.name}@{f.default}" for _, f in _FAMILIES.items()])


def find_metric(name: str) -> Metric | None:
    """The registered metric named exactly `name` (`ece@10`, `accuracy`; not a bare family), else None.
    For readers that only describe a name (report labels and order) and must not fail on others."""
    load_plugins()
    metric = _PLAIN.find(name)
    if metric is not None:
        return metric
    family, _, param = name.partition("@")
    fam = _FAMILIES.find(family)
    if fam is None or not param.isdigit() or str(int(param)) != param or int(param) < 1:
        return None
    return fam.factory(int(param))


def base_metric_name(metric: str) -> str:
    """Drop a record prefix: `ts:ece@15` -> `ece@15`, `drop:accuracy` -> `accuracy`."""
    return metric.rsplit(":", 1)[-1]


def get_metric(name: str) -> Metric:
    """Look a metric up by name; `ece@10` builds the 10-bin variant. Unknown -> UsageError."""
    load_plugins()
    base = base_metric_name(name).strip()
    if base in _PLAIN:
        return _PLAIN.get(base)
    family, sep, param = base.partition("@")
    if family in _FAMILIES:
        fam = _FAMILIES.get(family)
        if not sep:
            return fam.factory(fam.default)
        try:
            bins = int(param)
        except ValueError:
            bins = 0
        if bins < 1 or str(bins) != param:
            raise UsageError(f"metric '{name}': the part after '@' must be a positive bin count, e.g. {family}@15")
        return fam.factory(bins)
    known = metric_names()
    hint = did_you_mean(base, known + _FAMILIES.names())
    raise UsageError(f"unknown metric '{name}'{hint}; known: {', '.join(known)} (bin count after '@')")


def check_inputs(probs, labels, where: str = "metric") -> tuple[np.ndarray, np.ndarray]:
    """Shapes and values every metric relies on; raises UsageError with one line."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise UsageError(f"{where}: probs must have shape [n, k] with k >= 2, got {probs.shape}")
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise UsageError(f"{where}: labels must have shape [{probs.shape[0]}], got {labels.shape}")
    if probs.shape[0] == 0:
        raise UsageError(f"{where}: no examples")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise UsageError(f"{where}: labels must lie in [0, {probs.shape[1] - 1}]")
    return probs, labels.astype(np.int64)


FEW_CLASSES = 8  # up to this many columns a row maximum is taken column by column


def confidence(probs: np.ndarray) -> np.ndarray:
    """Top-label confidence: the max softmax probability. For a few classes as elementwise maxima of
    the columns (the same values): numpy's max along rows of 2 columns is ~30x slower."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or not 1 < probs.shape[1] <= FEW_CLASSES:
        return probs.max(axis=1)
    top = np.maximum(probs[:, 0], probs[:, 1])
    for j in range(2, probs.shape[1]):
        np.maximum(top, probs[:, j], out=top)
    return top


def predictions(probs: np.ndarray) -> np.ndarray:
    """Predicted class: argmax, first index on ties (numpy's convention, used everywhere here)."""
    return np.asarray(probs).argmax(axis=1)


def correct(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return predictions(probs) == np.asarray(labels)
