"""Top-label calibration: ECE, MCE, ACE (netcal's definitions), Brier, NLL and reliability bins.

ECE, MCE and ACE are computed here with numpy over netcal's bins (equal-width on [0, 1], or quantile
edges pinned to 0 and 1; confidences clipped to [eps, 1 - eps]; empty bins left out), and tested
against netcal itself (tests/test_metrics.py, tests/test_calibration_vs_netcal.py). Calling netcal
here imported torch (netcal depends on it): about 2 s of CPU on every `aligneval run` and report
that only reads cached predictions, for a few bincounts.

netcal trap (for anyone calling netcal directly): when the labels it sees take <= 2 distinct values,
netcal switches to its *binary* mode and treats `y` as "is positive" and the second probability
column as the confidence, which is positive-class calibration, not top-label. Handing it the
top-label confidence (1-D) and the 0/1 correctness indicator gives the top-label error for any number
of classes; that is what the tests compare against.
"""

from __future__ import annotations

import numpy as np

from aligneval.metrics.base import UNRANKED, Metric, confidence, correct, register_family, register_metric

PROB_EPS = float(np.finfo(np.float64).eps)  # same clip as scikit-learn's log_loss and netcal


def _binned_error(kind: str, bins: int, equal_intervals: bool, probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-label calibration error over netcal's bins: ECE (count-weighted mean gap), MCE (largest
    gap) or ACE (unweighted mean gap), the gaps |accuracy - confidence| of the non-empty bins."""
    conf = np.clip(confidence(probs), PROB_EPS, 1 - PROB_EPS)
    hit = correct(probs, labels).astype(np.float64)
    edges = bin_edges(conf, bins, equal_mass=not equal_intervals)
    return _binned(kind, conf, hit, edges)


def _binned(kind: str, conf: np.ndarray, hit: np.ndarray, edges: np.ndarray) -> float:
    idx = assign_bins(conf, edges)
    size = len(edges) - 1
    count = np.bincount(idx, minlength=size)
    full = count > 0
    gaps = np.abs(np.bincount(idx, hit, minlength=size)[full] - np.bincount(idx, conf, minlength=size)[full])
    gaps /= count[full]
    if kind == "ece":
        return float(np.sum(gaps * count[full]) / len(conf))
    return float(gaps.max() if kind == "mce" else gaps.mean())


def ece(probs, labels, bins: int = 15) -> float:
    return _binned_error("ece", bins, True, probs, labels)


def mce(probs, labels, bins: int = 15) -> float:
    return _binned_error("mce", bins, True, probs, labels)


def ace(probs, labels, bins: int = 15) -> float:
    return _binned_error("ace", bins, False, probs, labels)


# report order of the bin counts the calibration suite records by default; other bin counts come after
ORDER = {"ece": {15: 30, 10: 40}, "mce": {15: 50}, "ace": {15: 60}}


def _order(family: str, bins: int) -> float:
    return ORDER[family].get(bins, UNRANKED)


@register_family("ece")
def _ece_metric(bins: int) -> Metric:
    return Metric(f"ece@{bins}", lambda p, y: ece(p, y, bins), False, (0.0, 1.0),
                  f"top-label expected calibration error, {bins} equal-width bins (netcal)", {"bins": bins},
                  label=f"ECE ({bins} bins)", order=_order("ece", bins))


@register_family("mce")
def _mce_metric(bins: int) -> Metric:
    return Metric(f"mce@{bins}", lambda p, y: mce(p, y, bins), False, (0.0, 1.0),
                  f"top-label maximum calibration error over non-empty bins, {bins} equal-width bins (netcal)",
                  {"bins": bins}, label=f"MCE ({bins} bins)", order=_order("mce", bins))


@register_family("ace")
def _ace_metric(bins: int) -> Metric:
    return Metric(f"ace@{bins}", lambda p, y: ace(p, y, bins), False, (0.0, 1.0),
                  f"top-label calibration error with {bins} equal-mass bins, mean over non-empty bins "
                  "(netcal ACE, equal_intervals=False)", {"bins": bins}, label=f"ACE ({bins} bins)",
                  order=_order("ace", bins))


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


register_metric(Metric("brier", brier, False, (0.0, 2.0), "mean over examples of sum_k (p_k - y_k)^2",
                       label="Brier score", order=70))
register_metric(Metric("nll", nll, False, (0.0, None), "mean negative log-likelihood of the label",
                       label="NLL", order=80))


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
