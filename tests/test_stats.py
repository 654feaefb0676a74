"""Paired statistics against independent references: the metrics themselves, statsmodels, scipy, hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from aligneval import stats
from aligneval.errors import DataError

FAST_METRICS = ["accuracy", "macro_f1", "brier", "nll", "ece@15", "ece@10", "mce@15", "aurc", "auroc_error"]


def _probs(n, k, rng, skill=1.0, round_to=None):
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += skill
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    if round_to:  # ties in confidence, which rank-based fast paths must handle like the metric does
        p = np.round(p, round_to)
        p /= p.sum(1, keepdims=True)
    return p, labels


@pytest.mark.parametrize("metric", FAST_METRICS + ["ace@15"])
@pytest.mark.parametrize("k", [2, 3])
def test_every_statistic_equals_the_metric_on_the_resampled_rows(metric, k):
    rng = np.random.default_rng(k)
    probs, labels = _probs(300, k, rng, round_to=2)
    w = next(stats.count_chunks(len(labels), 8, np.random.default_rng(1)))
    fast = stats.statistic(metric, probs, labels)(w)
    fn = stats.get_metric(metric).fn
    ref = [fn(probs[np.repeat(np.arange(len(labels)), row.astype(int))],
              labels[np.repeat(np.arange(len(labels)), row.astype(int))]) for row in w.T]
    np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-12)
    assert metric.split("@")[0] in stats.FAST  # a fast path exists for every built-in metric


def test_count_matrix_rows_are_bootstrap_resamples():
    w = np.concatenate(list(stats.count_chunks(50, 1000, np.random.default_rng(0), cells=5000)), axis=1)
    assert w.shape == (50, 1000)  # examples x resamples
    assert np.all(w.sum(0) == 50)
    # each example is drawn Binomial(50, 1/50) times: mean 1, variance 49/50
    assert abs(w.mean() - 1) < 1e-12
    assert abs(w.var() - 49 / 50) < 0.05


def test_temperature_matches_the_metrics_package():
    from aligneval.metrics import scale_probs

    probs, _ = _probs(40, 3, np.random.default_rng(0))
    np.testing.assert_allclose(stats.apply_temperature(probs, 1.7), scale_probs(probs, 1.7), rtol=1e-12)
    assert stats.apply_temperature(probs, None) is probs


def test_bootstrap_ci_covers_the_true_difference_at_about_the_nominal_rate():
    """Two models with population accuracies 0.70 and 0.76 (true delta 0.06), 300 replications."""
    rng = np.random.default_rng(12345)
    n, reps, covered, widths = 250, 300, 0, []
    labels = np.zeros(n, dtype=np.int64)
    for rep in range(reps):
        hit_a = rng.random(n) < 0.70
        hit_b = rng.random(n) < 0.76
        probs_a = np.where(hit_a[:, None], [[0.8, 0.2]], [[0.3, 0.7]])
        probs_b = np.where(hit_b[:, None], [[0.9, 0.1]], [[0.4, 0.6]])
        iv = stats.paired_bootstrap("accuracy", probs_a, probs_b, labels, resamples=400, seed=rep)
        covered += iv.ci_low <= 0.06 <= iv.ci_high
        widths.append(iv.ci_high - iv.ci_low)
    rate = covered / reps
    assert 0.91 <= rate <= 0.985, rate
    # the width matches the normal approximation 2 * 1.96 * sqrt(var/n) within 10%
    expected = 2 * 1.96 * np.sqrt((0.7 * 0.3 + 0.76 * 0.24) / n)
    assert abs(np.mean(widths) / expected - 1) < 0.1


def test_bootstrap_is_deterministic_for_a_seed_and_changes_with_it():
    probs_a, labels = _probs(200, 2, np.random.default_rng(0))
    probs_b, _ = _probs(200, 2, np.random.default_rng(1))
    a = stats.paired_bootstrap("ece@15", probs_a, probs_b, labels, resamples=200, seed=3)
    b = stats.paired_bootstrap("ece@15", probs_a, probs_b, labels, resamples=200, seed=3)
    c = stats.paired_bootstrap("ece@15", probs_a, probs_b, labels, resamples=200, seed=4)
    assert a == b and a.ci_low != c.ci_low
    fn = stats.get_metric("ece@15").fn
    assert a.delta == pytest.approx(fn(probs_b, labels) - fn(probs_a, labels))


def test_identical_models_give_a_zero_interval_and_p_one():
    probs, labels = _probs(100, 2, np.random.default_rng(0))
    iv = stats.paired_bootstrap("brier", probs, probs, labels, resamples=100)
    assert (iv.delta, iv.ci_low, iv.ci_high, iv.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("b,c", [(1, 9), (5, 5), (0, 7), (12, 30), (3, 0), (40, 25)])
def test_mcnemar_equals_statsmodels_exact(b, c):
    from statsmodels.stats.contingency_tables import mcnemar

    # correctness vectors with b (baseline right, candidate wrong) and c (the reverse) discordant pairs
    a_right = np.r_[np.ones(b + 20), np.zeros(c + 6)].astype(bool)
    b_right = np.r_[np.zeros(b), np.ones(20), np.ones(c), np.zeros(6)].astype(bool)
    got = stats.mcnemar(a_right, b_right)
    ref = mcnemar([[20, b], [c, 6]], exact=True).pvalue
    assert (got.b, got.c) == (b, c)
    assert got.p_value == pytest.approx(ref, rel=1e-12)


def test_mcnemar_hand_case_and_no_discordant_pairs():
    # b = 1, c = 9: p = 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024
    a = np.array([1] + [0] * 9, bool)
    got = stats.mcnemar(a, ~a)
    assert got.p_value == pytest.approx(22 / 1024, rel=1e-12)
    same = stats.mcnemar(np.array([1, 0, 1], bool), np.array([1, 0, 1], bool))
    assert same.p_value == 1.0 and same.no_difference


def test_holm_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.2, 0.005, 0.5]
    ref = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(stats.holm(p), ref, rtol=1e-12)
    assert stats.holm([0.01, None, 0.02]) == [pytest.approx(0.02), None, pytest.approx(0.02)]


def test_seed_summary_paired_equals_statsmodels_t_interval():
    from statsmodels.stats.weightstats import DescrStatsW

    base = {"13": 0.81, "42": 0.84, "7": 0.80, "99": 0.83}
    cand = {"13": 0.85, "42": 0.85, "7": 0.84, "99": 0.86}
    s = stats.seed_summary(base, cand)
    d = np.array([cand[k] - base[k] for k in base])
    lo, hi = DescrStatsW(d).tconfint_mean(alpha=0.05)
    assert (s.interval.ci_low, s.interval.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert s.baseline_sd == pytest.approx(np.std(list(base.values()), ddof=1))
    from scipy.stats import ttest_rel

    assert s.interval.p_value == pytest.approx(ttest_rel(list(cand.values()), list(base.values())).pvalue)


def test_seed_summary_unpaired_equals_statsmodels_welch():
    from statsmodels.stats.weightstats import CompareMeans

    base = {"1": 0.80, "2": 0.82, "3": 0.79}
    cand = {"4": 0.85, "5": 0.83, "6": 0.88, "7": 0.86}
    s = stats.seed_summary(base, cand)
    lo, hi = CompareMeans.from_data(list(cand.values()), list(base.values())).tconfint_diff(usevar="unequal")
    assert (s.interval.ci_low, s.interval.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert "Welch" in s.interval.method
    one = stats.seed_summary({"1": 0.8}, {"1": 0.9})
    assert one.interval.ci_low is None and one.interval.delta == pytest.approx(0.1)


def test_align_ids_reorders_and_refuses_different_sets():
    order = stats.align_ids(["a", "b", "c"], ["c", "a", "b"], "test", ("x", "y"))
    assert [["c", "a", "b"][i] for i in order] == ["a", "b", "c"]
    with pytest.raises(DataError, match=r"split 'ood'.*1 ids only in x \(e.g. 'c'\).*1 ids only in y \(e.g. 'd'\)"):
        stats.align_ids(["a", "b", "c"], ["a", "b", "d"], "ood", ("x", "y"))
    with pytest.raises(DataError, match="duplicate"):
        stats.align_ids(["a", "a"], ["a", "b"], "dev", ("x", "y"))
    with pytest.raises(DataError, match="fingerprints differ"):
        stats.check_fingerprints("test", "abc", "abd", ("x", "y"))
    stats.check_fingerprints("test", "abc", "abc", ("x", "y"))


@pytest.mark.parametrize("delta,p,hib,expected", [
    (0.02, 0.01, True, "better"), (-0.02, 0.01, True, "worse"), (-0.02, 0.01, False, "better"),
    (0.02, 0.01, False, "worse"), (0.02, 0.2, True, "no-difference"), (0.02, None, None, "n/a"),
])
def test_verdict_uses_the_direction(delta, p, hib, expected):
    assert stats.verdict(delta, p, hib) == expected


def test_verdict_without_p_uses_the_interval():
    assert stats.verdict(0.1, None, True, ci=(0.01, 0.2)) == "better"
    assert stats.verdict(0.1, None, True, ci=(-0.01, 0.2)) == "no-difference"
