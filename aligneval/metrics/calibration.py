"""Top-label calibration: ECE, MCE, ACE (computed with netcal), Brier, NLL and reliability bins.

netcal trap: when the labels it sees take <= 2 distinct values, netcal switches to its *binary*
mode and treats `y` as "is positive" and the second probability column as the confidence, which is
positive-class calibration, not top-label calibration (and garbage for a 3-class split whose labels
happen to be {0, 2}). So we always hand netcal the top-label confidence (1-D) and the 0/1 correctness
indicator: then its binary mode computes exactly the top-label error for any number of classes.
"""

from __future__ import annotations

import numpy as np

from aligneval.metrics.base import Metric, confidence, correct, register_family, register_metric

PROB_EPS = float(np.finfo(np.float64).eps)  # same clip as scikit-learn's log_loss


def _netcal(kind: str, bins: int, equal_intervals: bool, probs: np.ndarray, labels: np.ndarray) -> float:
    from netcal import metrics as ncm

    cls = {"ece": ncm.ECE, "mce": ncm.MCE, "ace": ncm.ACE}[kind]
    conf = confidence(probs)
    hit = correct(probs, labels).astype(np.int64)
    if not equal_intervals:
        edges = bin_edges(np.clip(conf, PROB_EPS, 1 - PROB_EPS), bins, equal_mass=True)
        if np.any(np.diff(edges) <= 0):
            # tied confidences collapse quantile edges and scipy (inside netcal) refuses zero-width
            # bins; the same definition over the same edges, with the empty bins left out
            return _binned(kind, conf, hit, edges)
    return float(cls(bins=bins, equal_intervals=equal_intervals).measure(conf, hit))


def _binned(kind: str, conf: np.ndarray, hit: np.ndarray, edges: np.ndarray) -> float:
    conf = np.clip(conf, PROB_EPS, 1 - PROB_EPS)
    idx = assign_bins(conf, edges)
    gaps, weights = [], []
    for b in np.unique(idx):
        mask = idx == b
        gaps.append(abs(hit[mask].mean() - conf[mask].mean()))
        weights.append(mask.mean())
    gaps_a, weights_a = np.array(gaps), np.array(weights)
    return float({"ece": np.sum(gaps_a * weights_a), "mce": gaps_a.max(), "ace": gaps_a.mean()}[kind])


def ece(probs, labels, bins: int = 15) -> float:
    return _netcal("ece", bins, True, probs, labels)


def mce(probs, labels, bins: int = 15) -> float:
    return _netcal("mce", bins, True, probs, labels)


def ace(probs, labels, bins: int = 15) -> float:
    return _netcal("ace", bins, False, probs, labels)


@register_family("ece")
def _ece_metric(bins: int) -> Metric:
    return Metric(f"ece@{bins}", lambda p, y: ece(p, y, bins), False, (0.0, 1.0),
                  f"top-label expected calibration error, {bins} equal-width bins (netcal)", {"bins": bins})


@register_family("mce")
def _mce_metric(bins: int) -> Metric:
    return Metric(f"mce@{bins}", lambda p, y: mce(p, y, bins), False, (0.0, 1.0),
                  f"top-label maximum calibration error over non-empty bins, {bins} equal-width bins (netcal)",
                  {"bins": bins})


@register_family("ace")
def _ace_metric(bins: int) -> Metric:
    return Metric(f"ace@{bins}", lambda p, y: ace(p, y, bins), False, (0.0, 1.0),
                  f"top-label calibration error with {bins} equal-mass bins, mean over non-empty bins "
                  "(netcal ACE, equal_intervals=False)", {"bins": bins})


def brier(probs, labels) -> float:
    """Multi-class Brier: mean over examples of sum_k (p_k - y_k)^2, in [0, 2]."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def nll(probs, labels) -> float:
    """Mean -log p(label), p clipped to [eps, 1 - eps] (float64 eps, as scikit-learn's log_loss)."""
    probs = np.asarray(probs, dtype=np.float64)
    p = probs[np.arange(len(probs)), np.asarray(labels)]
    return float(np.mean(-np.log(np.clip(p, PROB_EPS, 1 - PROB_EPS))))


register_metric(Metric("brier", brier, False, (0.0, 2.0), "mean over examples of sum_k (p_k - y_k)^2"))
register_metric(Metric("nll", nll, False, (0.0, None), "mean negative log-likelihood of the label"))


def bin_edges(conf: np.ndarray, bins: int, equal_mass: bool = False) -> np.ndarray:
    """Bin edges as netcal builds them: equal-width on [0, 1], or quantiles with ends pinned to 0 and 1."""
    if not equal_mass:
        return np.linspace(0.0, 1.0, bins + 1)
    edges = np.quantile(conf, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return edges


def assign_bins(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index per value: left-closed bins, the last one closed on the right (numpy histogram rule)."""
    idx = np.searchsorted(edges, conf, side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def reliability_bins(probs, labels, bins: int = 15, equal_mass: bool = False) -> dict[str, list]:
    """Per-bin mean confidence, accuracy and count (empty bins: count 0, confidence/accuracy None),
    enough to draw a reliability diagram without the model."""
    conf = np.clip(confidence(probs), PROB_EPS, 1 - PROB_EPS)
    hit = correct(probs, labels).astype(np.float64)
    edges = bin_edges(conf, bins, equal_mass)
    idx = assign_bins(conf, edges)
    out: dict[str, list] = {"bin_lower": [], "bin_upper": [], "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        out["bin_lower"].append(float(edges[b]))
        out["bin_upper"].append(float(edges[b + 1]))
        out["count"].append(n)
        out["confidence"].append(float(conf[mask].mean()) if n else None)
        out["accuracy"].append(float(hit[mask].mean()) if n else None)
    return out
