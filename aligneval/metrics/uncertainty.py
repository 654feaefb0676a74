"""Selective prediction and error detection: AURC, risk-coverage curve, AUROC of confidence."""

from __future__ import annotations

import numpy as np

from aligneval.metrics.base import Metric, confidence, correct, register_metric


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (scipy.stats.rankdata's 'average',
    which it is tested against; importing scipy.stats cost scoring about 0.7 s of CPU)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for telling positives from negatives (Mann-Whitney U,
    ties count one half). NaN when one of the two groups is empty (undefined, not 0.5)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)  # average ranks on ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def auroc_error(probs, labels) -> float:
    """AUROC of the top-label confidence for separating correct from wrong predictions
    (equivalently, of -confidence for detecting errors). NaN if all are right or all wrong."""
    return auroc(confidence(probs), correct(probs, labels))


def risk_coverage(probs, labels) -> dict[str, list]:
    """Risk-coverage curve of selective prediction by confidence: at each distinct confidence
    threshold t (high to low), coverage = share of examples with confidence >= t and risk = error
    rate among them. Tied confidences enter together, so the curve does not depend on row order."""
    conf = confidence(probs)
    err = (~correct(probs, labels)).astype(np.float64)
    order = np.argsort(-conf, kind="stable")
    conf, err = conf[order], err[order]
    last_of_group = np.r_[conf[1:] != conf[:-1], True]
    kept = np.arange(1, len(conf) + 1)[last_of_group]
    errors = np.cumsum(err)[last_of_group]
    return {
        "threshold": conf[last_of_group].tolist(),
        "coverage": (kept / len(conf)).tolist(),
        "risk": (errors / kept).tolist(),
    }


def aurc(probs, labels) -> float:
    """Area under the risk-coverage step curve: sum over thresholds of (coverage gained) x risk.
    Without ties this is the usual mean over k = 1..n of the error rate among the k most confident."""
    curve = risk_coverage(probs, labels)
    coverage = np.asarray(curve["coverage"])
    gained = np.diff(np.r_[0.0, coverage])
    return float(np.sum(gained * np.asarray(curve["risk"])))


register_metric(Metric("aurc", aurc, False, (0.0, 1.0), "area under the risk-coverage curve (confidence = MSP)",
                       label="AURC", order=90))
register_metric(Metric("auroc_error", auroc_error, True, (0.0, 1.0),
                       "AUROC of confidence for telling correct from misclassified examples",
                       label="AUROC (error detection)", order=100))
register_metric(Metric("msp_auroc_ood", None, True, (0.0, 1.0),
                       "AUROC of max softmax probability for telling in-domain test from out-of-domain examples",
                       label="MSP AUROC (in vs out)", order=110))
