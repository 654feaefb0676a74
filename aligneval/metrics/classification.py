"""Accuracy and macro-F1."""

from __future__ import annotations

import numpy as np

from aligneval.metrics.base import Metric, correct, predictions, register_metric


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(correct(probs, labels)))


def macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions
    (scikit-learn's `f1_score(average="macro")` convention; absent classes do not count)."""
    pred = predictions(probs)
    labels = np.asarray(labels)
    scores = []
    for c in np.union1d(labels, pred):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


register_metric(Metric("accuracy", accuracy, True, (0.0, 1.0), "fraction of examples whose argmax is the label",
                       label="Accuracy", order=10))
register_metric(Metric("macro_f1", macro_f1, True, (0.0, 1.0),
                       "unweighted mean F1 over classes present in labels or predictions", label="Macro-F1", order=20))
