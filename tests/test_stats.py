"""Paired statistics against independent references: the metrics themselves, statsmodels, scipy, hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from aligneval.compare import multiplicity, stats
from aligneval.errors import DataError
from tests.fixtures_results import synthetic_probs


def test_temperature_scaling_of_stored_probabilities_equals_scipy_softmax():
    # the one temperature function (aligneval.metrics.scale_probs) that scoring and comparison share
    from scipy.special import softmax

    from aligneval.metrics import scale_probs

    probs, _ = synthetic_probs(40, 3, np.random.default_rng(0))
    np.testing.assert_allclose(scale_probs(probs, 1.7), softmax(np.log(probs) / 1.7, axis=1), rtol=1e-12)
    assert scale_probs(probs, None) is probs and scale_probs(probs, 1.0) is probs


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
    np.testing.assert_allclose(multiplicity.adjust(p, "holm"), ref, rtol=1e-12)
    assert multiplicity.adjust([0.01, None, 0.02], "holm") == [pytest.approx(0.02), None, pytest.approx(0.02)]


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


def _seed_simulation(reps: int, n_seeds: int, seed: int, n: int = 200, resamples: int = 200) -> dict[str, float]:
    """Coverage of the true mean difference (0.02) when seeds and test examples both vary.

    Per example x and training seed s the candidate - baseline difference is
    0.02 + a_s (seed effect, sd 0.012) + e_x (example effect, sd 0.1) + noise (sd 0.05): the
    crossed design of a real run, where every seed is scored on the same test set."""
    from aligneval.compare import resampling

    rng = np.random.default_rng(seed)
    covered = {"combined": 0, "examples only": 0, "seeds only": 0}
    for _ in range(reps):
        d = (0.02 + rng.normal(0, 0.012, n_seeds)[None, :] + rng.normal(0, 0.1, n)[:, None]
             + rng.normal(0, 0.05, (n, n_seeds)))
        base = rng.normal(0.7, 0.05, (n, n_seeds))
        bv = {str(s): float(base[:, s].mean()) for s in range(n_seeds)}
        cv = {str(s): float((base + d)[:, s].mean()) for s in range(n_seeds)}
        w = np.concatenate(list(resampling.count_chunks(n, resamples, rng)))
        example_deltas = w @ d.mean(axis=1) / n  # one resample of examples shared by every seed
        for name, iv in (("combined", stats.seed_example_interval(bv, cv, example_deltas)),
                         ("examples only", stats.percentile_interval(float(d.mean()), example_deltas)),
                         ("seeds only", stats.seed_summary(bv, cv).interval)):
            covered[name] += iv.ci_low <= 0.02 <= iv.ci_high
    return {k: v / reps for k, v in covered.items()}


@pytest.mark.parametrize("n_seeds,seed", [(3, 0), (5, 1)])
def test_seed_and_example_interval_covers_on_a_simulation(n_seeds, seed):
    """The combined interval keeps its 95% coverage; the example bootstrap alone (what one seed can
    give) misses the seed variance, and with 5 seeds the seed-level t alone misses the test-set part."""
    cov = _seed_simulation(400, n_seeds, seed)
    assert cov["combined"] >= 0.92, cov
    assert cov["examples only"] <= 0.88, cov
    if n_seeds == 5:
        assert cov["seeds only"] <= 0.90, cov


def test_seed_and_example_interval_with_one_seed_on_a_side():
    rng = np.random.default_rng(3)
    reps = rng.normal(0.03, 0.01, 500)
    iv = stats.seed_example_interval({"1": 0.80}, {"1": 0.83, "2": 0.84}, reps)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (iv.ci_low, iv.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert iv.delta == pytest.approx(0.835 - 0.80)
    assert "test-set sampling only" in iv.extra["note"]


def test_bootstrap_p_floor_is_flagged():
    at_floor = stats.percentile_interval(0.1, np.full(999, 0.1) + np.linspace(0, 0.01, 999))
    assert at_floor.p_value == pytest.approx(2 / 1000) and at_floor.extra["p_floor"]
    inside = stats.percentile_interval(0.1, np.linspace(-0.1, 0.3, 999))
    assert not inside.extra["p_floor"] and inside.p_value > 2 / 1000
    assert stats.p_floor(999) == pytest.approx(2 / 1000)
    assert stats.mc_standard_error(0.05, 1000) == pytest.approx(np.sqrt(0.05 * 1.95 / 1000))
