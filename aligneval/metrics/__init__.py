"""Functional metrics with metadata: `get_metric("ece@15")(probs, labels) -> float`.

Each metric is a pure numpy function over probabilities [n, k] and integer labels [n], registered
with its direction, range, report label and report order so reports and gates never special-case a
name. Conventions: confidence = max softmax probability (top-label); bin counts are part of the name (`ece@10`).
Every module of this package is imported here, so a new built-in metric is one module that registers it.
"""

import importlib
import pkgutil

from aligneval.metrics.base import (
    DEFAULT_BINS,
    UNRANKED,
    Metric,
    base_metric_name,
    check_inputs,
    confidence,
    correct,
    find_metric,
    get_metric,
    metric_names,
    predictions,
    register_family,
    register_metric,
)
from aligneval.metrics.calibration import bin_edges, reliability_bins
from aligneval.metrics.temperature import TemperatureScaler, logits_from_probs, scale_probs, softmax
from aligneval.metrics.uncertainty import auroc, risk_coverage

for _module in pkgutil.iter_modules(__path__):  # each metric module registers its metrics when imported
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DEFAULT_BINS", "UNRANKED", "Metric", "TemperatureScaler", "auroc", "base_metric_name", "bin_edges",
    "check_inputs", "confidence", "correct", "find_metric", "get_metric", "logits_from_probs", "metric_names",
    "predictions", "register_family", "register_metric", "reliability_bins", "risk_coverage", "scale_probs", "softmax",
]
