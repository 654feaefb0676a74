"""The paired bootstrap against independent references: every fast statistic equals the metric itself
on each resample's rows, and the intervals have the coverage the theory promises."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from aligneval.compare import resampling
from aligneval.metrics import get_metric, scale_probs
from tests.fixtures_results import synthetic_probs

FAST_METRICS = ["accuracy", "macro_f1", "brier", "nll", "ece@15", "ece@10", "mce@15", "aurc", "auroc_error", "ace@15"]


@pytest.fixture(autouse=True, params=["fused", "numpy"])
def engine(request, monkeypatch):
    """Every test here runs on both engines: the compiled statistics (numba) and chunk_stats' numpy ones."""
    if request.param == "fused" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed: the fused statistics are not registered")
    monkeypatch.setenv(resampling.ENGINE_ENV, request.param)
    assert resampling.engine(10) == request.param
    return request.param


def _reference(metric, probs, labels, w):
    """The metric called on the rows each resample draws."""
    fn = get_metric(metric).fn
    rows = [np.repeat(np.arange(len(labels)), r) for r in w]
    return np.array([fn(probs[i], labels[i]) for i in rows])


@pytest.mark.parametrize("metric", FAST_METRICS)
@pytest.mark.parametrize("k,round_to", [(2, 2), (3, 2), (2, None), (3, None)])
def test_every_statistic_equals_the_metric_on_the_resampled_rows(metric, k, round_to):
    probs, labels = synthetic_probs(300, k, np.random.default_rng(k), round_to=round_to)
    w = next(resampling.count_chunks(len(labels), 8, np.random.default_rng(1)))
    fast = resampling.statistic(metric, probs, labels)(w)
    np.testing.assert_allclose(fast, _reference(metric, probs, labels, w), rtol=1e-10, atol=1e-12)
    assert metric.split("@")[0] in resampling.FAST  # a fast path exists for every built-in metric


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("small", [True, False], ids=["cumulative-sums", "block-sums"])
def test_statistics_sharing_one_sorted_view_and_cache_stay_exact(k, small, monkeypatch):
    """As compare uses them: all metrics, raw and temperature-scaled, one `ranked` dict, one cache per chunk
    and work arrays reused across chunks (the last chunk is smaller). Both ways of summing count x
    confidence: plain cumulative sums (small splits) and block sums of every view at once plus a
    partial block (from Ranked.SMALL examples on; 400 is not a multiple of the block)."""
    monkeypatch.setattr(resampling.Ranked, "SMALL", 1024 if small else 0)
    probs, labels = synthetic_probs(400, k, np.random.default_rng(7), skill=1.5)
    ranked: dict = {}
    stats = {(m, t): resampling.statistic(m, probs, labels, t, ranked) for t in (None, 1.7, 0.6) for m in FAST_METRICS}
    work: dict = {}
    chunks = list(resampling.count_chunks(len(labels), 12, np.random.default_rng(2), cells=400 * 5))
    assert [len(w) for w in chunks] == [5, 5, 2]
    for w in chunks:
        cache = {"scratch": work}
        for (metric, t), stat in stats.items():
            ref = _reference(metric, scale_probs(probs, t), labels, w)
            np.testing.assert_allclose(stat(w, cache), ref, rtol=1e-10, atol=1e-12, err_msg=f"{metric} T={t}")


def test_observed_is_the_metric_on_the_full_sample():
    probs, labels = synthetic_probs(500, 3, np.random.default_rng(4), round_to=3)
    for metric in FAST_METRICS:
        stat = resampling.statistic(metric, probs, labels)
        assert resampling.observed(stat, len(labels)) == pytest.approx(get_metric(metric).fn(probs, labels), rel=1e-10)


def test_count_chunks_are_bootstrap_resamples():
    w = np.concatenate(list(resampling.count_chunks(50, 1000, np.random.default_rng(0), cells=5000)), axis=0)
    assert w.shape == (1000, 50) and w.dtype == np.int64  # resamples x examples
    assert np.all(w.sum(1) == 50)
    # each example is drawn Binomial(50, 1/50) times: mean 1, variance 49/50
    assert abs(w.mean() - 1) < 1e-12
    assert abs(w.var() - 49 / 50) < 0.05


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
        iv = resampling.paired_bootstrap("accuracy", probs_a, probs_b, labels, resamples=400, seed=rep)
        covered += iv.ci_low <= 0.06 <= iv.ci_high
        widths.append(iv.ci_high - iv.ci_low)
    rate = covered / reps
    assert 0.91 <= rate <= 0.985, rate
    # the width matches the normal approximation 2 * 1.96 * sqrt(var/n) within 10%
    expected = 2 * 1.96 * np.sqrt((0.7 * 0.3 + 0.76 * 0.24) / n)
    assert abs(np.mean(widths) / expected - 1) < 0.1


def test_bootstrap_is_deterministic_for_a_seed_and_changes_with_it():
    probs_a, labels = synthetic_probs(200, 2, np.random.default_rng(0))
    probs_b, _ = synthetic_probs(200, 2, np.random.default_rng(1))
    a = resampling.paired_bootstrap("ece@15", probs_a, probs_b, labels, resamples=200, seed=3)
    b = resampling.paired_bootstrap("ece@15", probs_a, probs_b, labels, resamples=200, seed=3)
    c = resampling.paired_bootstrap("ece@15", probs_a, probs_b, labels, resamples=200, seed=4)
    assert a == b and a.ci_low != c.ci_low
    fn = get_metric("ece@15").fn
    assert a.delta == pytest.approx(fn(probs_b, labels) - fn(probs_a, labels))


def test_identical_models_give_a_zero_interval_and_p_one():
    probs, labels = synthetic_probs(100, 2, np.random.default_rng(0))
    iv = resampling.paired_bootstrap("brier", probs, probs, labels, resamples=100)
    assert (iv.delta, iv.ci_low, iv.ci_high, iv.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_mean_difference_interval_equals_a_plain_bootstrap_of_the_mean():
    rng = np.random.default_rng(5)
    x, y = (rng.random(80) < 0.6).astype(float), (rng.random(80) < 0.7).astype(float)
    iv = resampling.bootstrap_mean_difference(x, y, resamples=300, seed=9)
    w = np.concatenate(list(resampling.count_chunks(80, 300, np.random.default_rng(9))))
    ref = [np.mean(np.repeat(y - x, r)) for r in w]
    assert (iv.ci_low, iv.ci_high) == tuple(pytest.approx(v, abs=1e-12) for v in np.quantile(ref, [0.025, 0.975]))


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
@pytest.mark.parametrize("k", [2, 3])
def test_counts_from_the_sorted_view_equal_the_product_exactly(metric, k):
    """Accuracy and macro-F1 read the correct count off a sorted view when one exists: the same values."""
    probs, labels = synthetic_probs(900, k, np.random.default_rng(5))
    ranked: dict = {}
    resampling.statistic("aurc", probs, labels, None, ranked)  # a sorted view of these predictions
    with_view = resampling.statistic(metric, probs, labels, None, ranked)
    alone = resampling.statistic(metric, probs, labels)
    w = next(resampling.count_chunks(len(labels), 40, np.random.default_rng(6)))
    assert np.array_equal(with_view(w, {}), alone(w))


@pytest.mark.parametrize("n", [7, 65_535, 65_536, 1_000_003])
def test_packed_indicator_counts_equal_one_product_per_column(n):
    """Several 0/1 columns share one product (bit fields of an integer below 2**52): the counts equal one
    product per column exactly, also where a count reaches n (one example drawn n times, every
    indicator 1 there) and at the bit widths' edges."""
    from aligneval.compare.chunk_stats import pack_indicators, unpack_counts

    rng = np.random.default_rng(n)
    cols = (rng.random((7, n)) < 0.4).astype(np.float64)
    cols[:, 0] = 1.0
    w = next(resampling.count_chunks(n, 3, rng)).astype(np.float64)
    w[0] = 0
    w[0, 0] = n  # every column's count is n in this resample: the widest value a field must hold
    packed = pack_indicators(cols, n)
    assert len(packed[0]) == -(-7 // (52 // n.bit_length()))
    assert np.array_equal(unpack_counts(w, packed), np.stack([w @ c for c in cols]))
    assert unpack_counts(w, packed)[0, 0] == n


def test_aurc_when_errors_times_counts_exceed_32_bits():
    """One resample that draws a single wrong example n times: errors x count = n^2 > 2^31, so the
    statistic takes its float product path; it must still equal the metric on the drawn rows."""
    n = 50_000
    probs, labels = synthetic_probs(n, 2, np.random.default_rng(8))
    wrong = int(np.flatnonzero(probs.argmax(1) != labels)[0])
    w = next(resampling.count_chunks(n, 2, np.random.default_rng(9)))
    w[0] = 0
    w[0, wrong] = n
    stat = resampling.statistic("aurc", probs, labels)
    np.testing.assert_allclose(stat(w), _reference("aurc", probs, labels, w), rtol=1e-10, atol=1e-12)


def test_threaded_bootstrap_equals_the_serial_one_bit_for_bit(monkeypatch):
    """Above SERIAL_CELLS each model's statistics run in their own thread on shared chunks (one float copy,
    one cache per model and chunk): the values must be those of the plain serial loop."""
    probs_a, labels = synthetic_probs(5000, 2, np.random.default_rng(21))
    probs_b, _ = synthetic_probs(5000, 2, np.random.default_rng(22))

    def sides():
        out = []
        for probs in (probs_a, probs_b):
            ranked: dict = {}
            out.append({(m, t): resampling.statistic(m, probs, labels, t, ranked) for t in (None, 1.3) for m in FAST_METRICS})
        return out

    assert 5000 * 1000 > resampling.SERIAL_CELLS
    threaded = resampling.bootstrap_sides(sides(), 5000, resamples=1000, seed=4, split="test")
    monkeypatch.setattr(resampling, "SERIAL_CELLS", 10**12)
    serial = resampling.bootstrap_sides(sides(), 5000, resamples=1000, seed=4, split="test")
    for a, b in zip(threaded, serial):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_statistics_in_row_blocks_equal_one_call_on_the_whole_chunk(monkeypatch):
    """run_chunk splits a drawn chunk into blocks of STAT_CELLS (cache-sized); the values must be the
    metric on each resample, and the rank-based ones the very same floats as one call on the chunk."""
    probs, labels = synthetic_probs(400, 2, np.random.default_rng(9), skill=1.2)
    ranked: dict = {}
    stats = {(m, t): resampling.statistic(m, probs, labels, t, ranked) for t in (None, 1.4) for m in FAST_METRICS}
    w = next(resampling.count_chunks(len(labels), 11, np.random.default_rng(3)))
    whole = [f(w, {"scratch": {}, "float": w.astype(np.float64)}) for f in stats.values()]
    monkeypatch.setattr(resampling, "STAT_CELLS", 400 * 3)  # blocks of 3, 3, 3 and 2 rows
    blocks = resampling.run_chunk(stats, w, w.astype(np.float64), {})
    for ((metric, t), a, b) in zip(stats, whole, blocks):
        assert b.shape == (11,)
        np.testing.assert_allclose(b, _reference(metric, scale_probs(probs, t), labels, w), rtol=1e-10, atol=1e-12)
        if metric not in ("brier", "nll", "macro_f1", "accuracy"):  # no BLAS product: no reordered sums
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
