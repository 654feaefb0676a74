"""Every metric against an independent reference (netcal, scikit-learn, hand-written loops)."""

from __future__ import annotations

import numpy as np
import pytest
from netcal.metrics import ACE, ECE, MCE
from sklearn.metrics import brier_score_loss, f1_score, log_loss, roc_auc_score

from aligneval.errors import UsageError
from aligneval.metrics import (
    TemperatureScaler,
    get_metric,
    metric_names,
    reliability_bins,
    risk_coverage,
    scale_probs,
    softmax,
)

EPS = np.finfo(np.float64).eps


def random_case(seed: int, n: int = 500, k: int = 3, sharpness: float = 3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * sharpness
    probs = softmax(logits)
    labels = rng.integers(0, k, size=n)
    # make predictions better than chance so both correct and wrong examples exist
    agree = rng.random(n) < 0.6
    labels[agree] = probs[agree].argmax(1)
    return probs, labels


def edge_cases():
    """(name, probs, labels): all correct, all wrong, one class, ties, confidence exactly 1."""
    rng = np.random.default_rng(7)
    p = softmax(rng.normal(size=(60, 3)) * 2)
    pred = p.argmax(1)
    yield "all_correct", p, pred
    yield "all_wrong", p, (pred + 1) % 3
    single = p.copy()
    yield "single_class", single, np.zeros(60, dtype=int)
    ties = np.tile([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], (20, 1))
    yield "ties", ties, np.tile([0, 2, 1], 20)
    onehot = np.eye(3)[rng.integers(0, 3, 30)]
    yield "confident", onehot, rng.integers(0, 3, 30)


CASES = [(f"random{s}-k{k}",) + random_case(s, k=k) for s in range(4) for k in (2, 3, 5)] + list(edge_cases())


# ---------- independent references ----------------------------------------------------------

def hand_binned(probs, labels, bins, kind, equal_mass=False):
    """Textbook loop over bins (top-label), written without aligneval's helpers."""
    conf = np.clip(probs.max(1), EPS, 1 - EPS)
    hit = (probs.argmax(1) == labels).astype(float)
    if equal_mass:
        edges = np.quantile(conf, np.linspace(0, 1, bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
    else:
        edges = np.linspace(0, 1, bins + 1)
    gaps, weights = [], []
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        mask = (conf >= lo) & ((conf < hi) if b < bins - 1 else (conf <= hi))
        if mask.sum() == 0:
            continue
        gaps.append(abs(hit[mask].mean() - conf[mask].mean()))
        weights.append(mask.sum() / len(conf))
    gaps, weights = np.array(gaps), np.array(weights)
    return {"ece": float(np.sum(gaps * weights)), "mce": float(gaps.max()), "ace": float(gaps.mean())}[kind]


@pytest.mark.parametrize("name,probs,labels", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("bins", [10, 15])
def test_ece_mce_vs_hand_loop(name, probs, labels, bins):
    assert get_metric(f"ece@{bins}")(probs, labels) == pytest.approx(hand_binned(probs, labels, bins, "ece"), abs=1e-12)
    assert get_metric(f"mce@{bins}")(probs, labels) == pytest.approx(hand_binned(probs, labels, bins, "mce"), abs=1e-12)
    assert get_metric(f"ace@{bins}")(probs, labels) == pytest.approx(
        hand_binned(probs, labels, bins, "ace", equal_mass=True), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bins", [10, 15])
def test_ece_mce_vs_netcal_multiclass_mode(seed, bins):
    """With >2 classes present, netcal's own multi-class path is top-label: an independent reference."""
    probs, labels = random_case(seed, k=4)
    assert len(np.unique(labels)) > 2
    assert get_metric(f"ece@{bins}")(probs, labels) == pytest.approx(ECE(bins=bins).measure(probs, labels), abs=1e-12)
    assert get_metric(f"mce@{bins}")(probs, labels) == pytest.approx(MCE(bins=bins).measure(probs, labels), abs=1e-12)
    assert get_metric(f"ace@{bins}")(probs, labels) == pytest.approx(
        ACE(bins=bins, equal_intervals=False).measure(probs, labels), abs=1e-12)


def test_netcal_binary_trap_is_avoided():
    """netcal given full [n, 2] probs measures positive-class calibration, not top-label; ours is top-label."""
    probs, labels = random_case(1, k=2)
    top_label = hand_binned(probs, labels, 15, "ece")
    netcal_full = ECE(bins=15).measure(probs, labels)
    # netcal's binary mode = calibration of p(class 1) against "label == 1"
    pos = np.clip(probs[:, 1], EPS, 1 - EPS)
    edges = np.linspace(0, 1, 16)
    idx = np.clip(np.searchsorted(edges, pos, side="right") - 1, 0, 14)
    positive_class = sum(abs((labels[idx == b] == 1).mean() - pos[idx == b].mean()) * (idx == b).mean()
                         for b in range(15) if (idx == b).any())
    assert netcal_full == pytest.approx(positive_class, abs=1e-12)
    assert get_metric("ece@15")(probs, labels) == pytest.approx(top_label, abs=1e-12)


def test_netcal_binary_trap_hand_computed():
    """Half predicted 1 at 0.8 (all right), half predicted 0 at 0.8 (all wrong, label 1).
    Top-label: confidence 0.8 everywhere, accuracy 0.5 -> ECE 0.3. netcal on full probs measures
    p(class 1) in bins 0.8 (gap 0.2) and 0.2 (gap 0.8) -> 0.5."""
    probs = np.array([[0.2, 0.8]] * 10 + [[0.8, 0.2]] * 10)
    labels = np.ones(20, dtype=int)
    assert get_metric("ece@15")(probs, labels) == pytest.approx(0.3)
    assert ECE(bins=15).measure(probs, labels) == pytest.approx(0.5)


@pytest.mark.parametrize("name,probs,labels", CASES, ids=[c[0] for c in CASES])
def test_brier_nll_accuracy_f1_vs_sklearn(name, probs, labels):
    k = probs.shape[1]
    assert get_metric("brier")(probs, labels) == pytest.approx(
        brier_score_loss(labels, probs, labels=list(range(k)), scale_by_half=False), abs=1e-12)
    assert get_metric("nll")(probs, labels) == pytest.approx(log_loss(labels, probs, labels=list(range(k))), rel=1e-9)
    assert get_metric("accuracy")(probs, labels) == pytest.approx(np.mean(probs.argmax(1) == labels))
    assert get_metric("macro_f1")(probs, labels) == pytest.approx(
        f1_score(labels, probs.argmax(1), average="macro", zero_division=0.0), abs=1e-12)


def test_brier_range_extremes():
    wrong = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert get_metric("brier")(wrong, np.array([1, 0])) == pytest.approx(2.0)
    assert get_metric("brier")(wrong, np.array([0, 1])) == pytest.approx(0.0)


@pytest.mark.parametrize("name,probs,labels", CASES, ids=[c[0] for c in CASES])
def test_auroc_error_vs_sklearn(name, probs, labels):
    hit = probs.argmax(1) == labels
    value = get_metric("auroc_error")(probs, labels)
    if hit.all() or (~hit).all():
        assert np.isnan(value)
    else:
        assert value == pytest.approx(roc_auc_score(hit, probs.max(1)), abs=1e-12)


def test_aurc_hand_computed():
    # confidences 0.9 > 0.8 > 0.7 > 0.6 with correctness 1,0,1,0: risks 0, 1/2, 1/3, 2/4
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    labels = np.array([0, 0, 0, 0])
    assert get_metric("aurc")(probs, labels) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    curve = risk_coverage(probs, labels)
    assert curve["coverage"] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert curve["risk"] == pytest.approx([0, 1 / 2, 1 / 3, 1 / 2])


def test_aurc_ties_enter_together():
    # two examples tie at 0.9 (one right, one wrong), then 0.6 right: 2/3 * 1/2 + 1/3 * 1/3
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])
    labels = np.array([0, 1, 0])
    assert get_metric("aurc")(probs, labels) == pytest.approx(2 / 3 * 1 / 2 + 1 / 3 * 1 / 3)
    assert get_metric("aurc")(probs[[1, 0, 2]], labels[[1, 0, 2]]) == pytest.approx(4 / 9)


def test_aurc_edge_cases():
    probs, _ = random_case(3)
    assert get_metric("aurc")(probs, probs.argmax(1)) == 0.0
    assert get_metric("aurc")(probs, (probs.argmax(1) + 1) % 3) == pytest.approx(1.0)


def test_reliability_bins_match_ece():
    probs, labels = random_case(2, k=3)
    bins = reliability_bins(probs, labels, 15)
    count = np.array(bins["count"])
    assert count.sum() == len(labels)
    gaps = [abs(a - c) * n for a, c, n in zip(bins["accuracy"], bins["confidence"], count) if n]
    assert sum(gaps) / len(labels) == pytest.approx(get_metric("ece@15")(probs, labels), abs=1e-12)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
@pytest.mark.parametrize("method", ["bounded", "grid"])
def test_temperature_recovers_known_t(true_t, method):
    """Labels drawn from softmax(z); the model reports z * T, so the NLL-optimal temperature is T."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 4)) * 2
    p = softmax(z)
    labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    scaler = TemperatureScaler(method=method).fit(z * true_t, labels)
    assert scaler.temperature_ == pytest.approx(true_t, rel=0.05)
    # fitting on probabilities gives the same temperature as on logits
    from_probs = TemperatureScaler(method=method, input="probs").fit(softmax(z * true_t), labels)
    assert from_probs.temperature_ == pytest.approx(scaler.temperature_, rel=1e-4)
    np.testing.assert_allclose(scaler.transform(z * true_t), scale_probs(softmax(z * true_t), scaler.temperature_),
                               atol=1e-9)


def test_temperature_lowers_nll_on_overconfident_model():
    probs, labels = random_case(5, n=2000, sharpness=6)
    scaler = TemperatureScaler(input="probs").fit(probs, labels)
    assert get_metric("nll")(scaler.transform(probs), labels) <= get_metric("nll")(probs, labels)


def test_names_metadata_and_errors():
    assert get_metric("ece").name == "ece@15"
    assert get_metric("ts:ece@10").name == "ece@10"
    for name in metric_names():
        m = get_metric(name)
        assert isinstance(m.higher_is_better, bool) and len(m.range) == 2 and m.description
    with pytest.raises(UsageError, match="did you mean 'ece@15'"):
        get_metric("ecee@15")
    with pytest.raises(UsageError, match="bin count"):
        get_metric("ece@x")
    with pytest.raises(UsageError):
        get_metric("accuracy")(np.ones((3, 2)) / 2, np.array([0, 1, 2]))
    with pytest.raises(UsageError):
        get_metric("msp_auroc_ood")(np.ones((3, 2)) / 2, np.array([0, 1, 1]))


def test_label_direction_and_order_live_on_the_metric():
    """The report reads a metric's label and place from the metric itself (docs/extending.md)."""
    from aligneval.metrics import UNRANKED, find_metric
    from aligneval.report.context import metric_label, metric_rank

    ece10, acc, f1 = find_metric("ece@10"), find_metric("accuracy"), find_metric("macro_f1")
    assert (ece10.label, ece10.higher_is_better, acc.label, acc.higher_is_better) == ("ECE (10 bins)", False,
                                                                                     "Accuracy", True)
    assert acc.order < f1.order < find_metric("ece@15").order < ece10.order < find_metric("nll").order
    assert find_metric("ece@20").order == UNRANKED and find_metric("ece@20").label == "ECE (20 bins)"
    # exact names only: a bare family, a bad bin count or an unknown name describe nothing
    assert find_metric("ece") is None and find_metric("ece@0") is None and find_metric("nope") is None
    assert metric_label("ts:ece@10") == "ECE (10 bins), temperature-scaled"
    assert metric_label("drop:accuracy") == "Accuracy: in→out drop" and metric_label("words_removed_pct") == \
        "words removed pct"
    ranked = sorted(["nll", "ts:ece@15", "zeta", "kq_mmd2", "accuracy", "ece@15"], key=metric_rank)
    assert ranked == ["accuracy", "ece@15", "nll", "kq_mmd2", "zeta", "ts:ece@15"]


def test_metrics_share_the_registry():
    """registry.py's claim: plain metrics and families are Registry instances (one 'registered twice' rule)."""
    from aligneval.metrics import base
    from aligneval.registry import Registry

    assert isinstance(base._PLAIN, Registry) and isinstance(base._FAMILIES, Registry)
    with pytest.raises(ValueError, match="registered twice"):
        base.register_metric(base.Metric("ece", None, False, (0.0, 1.0)))  # clashes with the ece family
    with pytest.raises(ValueError, match="registered twice"):
        base.register_metric(base.Metric("accuracy", None, True, (0.0, 1.0)))


@pytest.mark.parametrize("k", [1, 2, 3, 8, 9, 20])
def test_confidence_is_the_row_maximum(k):
    """confidence() takes maxima column by column for a few classes: the same values as numpy's row max,
    ties and NaN included."""
    from aligneval.metrics import confidence

    probs = np.random.default_rng(k).random((500, k))
    probs[::7] = np.round(probs[::7], 1)
    probs[3] = np.nan
    assert np.array_equal(confidence(probs), probs.max(axis=1), equal_nan=True)
