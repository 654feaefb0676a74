"""The compiled statistics (aligneval.compare.fused) against chunk_stats' numpy ones on the same counts,
and the choice between them. Both are held to the metric itself in test_resampling.py; here they are
held to each other on splits large enough for every code path (block sums, ties, orders that differ
between temperatures, refinement on a subset)."""

from __future__ import annotations

import numpy as np
import pytest

from aligneval.compare import resampling
from aligneval.errors import UsageError
from tests.fixtures_results import synthetic_probs

pytest.importorskip("numba")

METRICS = ["accuracy", "macro_f1", "brier", "nll", "ece@15", "ece@10", "mce@15", "aurc", "auroc_error", "ace@15"]
INTEGER_VALUED = {"accuracy"}  # sums of integers: equal to the last bit on both engines


def _statistics(engine, monkeypatch, probs, labels):
    monkeypatch.setenv(resampling.ENGINE_ENV, engine)
    ranked: dict = {}
    return {(m, t): resampling.statistic(m, probs, labels, t, ranked) for t in (None, 1.7, 0.6) for m in METRICS}


@pytest.mark.parametrize("k,round_to", [(2, None), (3, None), (2, 2), (4, 3)])
def test_fused_statistics_equal_the_numpy_ones_on_the_same_counts(k, round_to, monkeypatch):
    n = 5_003  # not a multiple of the 64-position blocks
    probs, labels = synthetic_probs(n, k, np.random.default_rng(k), skill=1.2, round_to=round_to)
    fused = _statistics("fused", monkeypatch, probs, labels)
    plain = _statistics("numpy", monkeypatch, probs, labels)
    work_f: dict = {}
    work_p: dict = {}
    for w in resampling.count_chunks(n, 24, np.random.default_rng(5), cells=n * 10):
        cache_f, cache_p = {"scratch": work_f}, {"scratch": work_p}
        for key in fused:
            a, b = fused[key](w, cache_f), plain[key](w, cache_p)
            if key[0] in INTEGER_VALUED:
                np.testing.assert_array_equal(a, b, err_msg=str(key))
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=str(key))


def test_a_subset_of_a_model_s_statistics_gives_the_same_values_as_the_whole_set(monkeypatch):
    """Refinement draws more resamples for a few statistics; they share the model's fused plan."""
    probs, labels = synthetic_probs(3_000, 2, np.random.default_rng(3))
    stats = _statistics("fused", monkeypatch, probs, labels)
    keys = [("aurc", None), ("ece@15", 1.7)]
    whole = resampling.bootstrap_sides([stats], 3_000, resamples=40, seed=1, split="test")[0]
    part = resampling.bootstrap_sides([{k: stats[k] for k in keys}], 3_000, resamples=40, seed=1, split="test")[0]
    for key in keys:
        np.testing.assert_array_equal(part[key], whole[key])


def test_the_engine_follows_the_split_size_and_the_environment(monkeypatch):
    monkeypatch.delenv(resampling.ENGINE_ENV, raising=False)
    assert resampling.engine(resampling.FUSED_MIN_EXAMPLES - 1) == "numpy"
    assert resampling.engine(resampling.FUSED_MIN_EXAMPLES) == "fused"
    monkeypatch.setenv(resampling.ENGINE_ENV, "numpy")
    assert resampling.engine(10**6) == "numpy"
    monkeypatch.setenv(resampling.ENGINE_ENV, "fused")
    assert resampling.engine(10) == "fused"
    monkeypatch.setenv(resampling.ENGINE_ENV, "numba")
    with pytest.raises(UsageError, match="ALIGNEVAL_STATS_ENGINE='numba': expected one of auto, fused, numpy"):
        resampling.engine(10)


def test_fused_statistics_need_no_float_copy_of_the_counts(monkeypatch):
    """The draw converts chunks to float64 only for statistics that read it (chunk_stats' products)."""
    probs, labels = synthetic_probs(500, 2, np.random.default_rng(2))
    stats = _statistics("fused", monkeypatch, probs, labels)
    assert all(getattr(s, "reads_float", True) is False for s in stats.values())
    monkeypatch.setenv(resampling.ENGINE_ENV, "numpy")
    assert getattr(resampling.statistic("brier", probs, labels), "reads_float", True) is True


def _numpy_counts(rng, n, c):
    draws = rng.integers(0, n, size=(c, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.int32)


@pytest.mark.parametrize("n", [2, 3, 1_000, 60_001, 123_457])
@pytest.mark.parametrize("buffered", [False, True], ids=["fresh", "half-buffered"])
def test_compiled_counts_equal_numpy_s_draws_and_leave_the_generator_where_numpy_does(n, buffered):
    """Same counts as rng.integers + bincount, chunk after chunk, and the same generator state after
    (a 32-bit half left in the generator, Lemire's rejections: 123,457 rejects about 1 draw in 10^5)."""
    from aligneval.compare import kernels

    a, b = np.random.default_rng([n, 1]), np.random.default_rng([n, 1])
    if buffered:  # an odd number of 32-bit draws leaves a half in the generator
        a.integers(0, 5, size=3), b.integers(0, 5, size=3)
    for c in (1, 4, 5):
        np.testing.assert_array_equal(kernels.draw_counts(a, n, c), _numpy_counts(b, n, c))
        assert a.bit_generator.state == b.bit_generator.state
    assert a.integers(0, 10**6, size=8).tolist() == b.integers(0, 10**6, size=8).tolist()


def test_compiled_counts_decline_what_they_do_not_reproduce():
    from aligneval.compare import kernels

    assert kernels.draw_counts(np.random.Generator(np.random.MT19937(0)), 100, 2) is None
    assert kernels.draw_counts(np.random.default_rng(0), 1, 2) is None


def test_linear_sums_ride_on_the_ranked_pass_whatever_the_order_they_were_asked_in(monkeypatch):
    """accuracy, brier and macro-F1 asked before any rank-based statistic: still one pass per block."""
    from aligneval.compare.fused import fusion_of

    probs, labels = synthetic_probs(2_000, 2, np.random.default_rng(6))
    monkeypatch.setenv(resampling.ENGINE_ENV, "fused")
    ranked: dict = {}
    stats = {m: resampling.statistic(m, probs, labels, None, ranked) for m in ("accuracy", "brier", "macro_f1", "aurc")}
    resampling.observed_all(stats, len(labels))
    assert len(fusion_of(ranked).plans) == 1


def test_asking_for_the_compiled_statistics_without_numba_is_a_usage_error(monkeypatch):
    from aligneval.compare import engines, fused

    monkeypatch.setattr(fused, "FUSED", {})  # as where numba does not import
    monkeypatch.setenv(resampling.ENGINE_ENV, "fused")
    with pytest.raises(UsageError, match=r"ALIGNEVAL_STATS_ENGINE=fused needs numba: pip install 'aligneval\[fast\]'"):
        engines.engine(10)
    monkeypatch.setenv(resampling.ENGINE_ENV, "auto")
    assert engines.engine(10**6) == "numpy"
