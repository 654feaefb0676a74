"""Paired statistics against independent references: the metrics themselves, statsmodels, scipy, hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from aligneval import stats
from aligneval.errors import DataError
from tests.fixtures_results import synthetic_probs


def test_temperature_matches_the_metrics_package():
    from aligneval.metrics import scale_probs

    probs, _ = synthetic_probs(40, 3, np.random.default_rng(0))
    np.testing.assert_allclose(stats.apply_temperature(probs, 1.7), scale_probs(probs, 1.7), rtol=1e-12)
    assert stats.apply_temperature(probs, None) is probs


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
