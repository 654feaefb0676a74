"""Paired bootstrap of every metric at once, on stored predictions.

One chunk of integer resample counts W [c, n] (row r says how often each example is drawn in resample
r; each row sums to n) is shared by both models and every metric of a split, so each resample is the
same multiset of example ids for both models. The statistics that turn a chunk into metric values live
in aligneval.compare.chunk_stats; this module draws the chunks and runs the statistics of both models
on them, each model in its own thread.
"""

from __future__ import annotations

import contextlib
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from aligneval.compare.chunk_stats import (  # noqa: F401 - the statistics are part of resampling's API
    FAST, RANKED_FAMILIES, Ranked, Statistic, count_dtype, generic_statistic, product)
from aligneval.compare.engines import (  # noqa: F401 - statistic and engine are part of resampling's API
    ENGINE_ENV, FUSED_MIN_EXAMPLES, compiled_counts, engine, statistic)
from aligneval.compare.stats import Interval, percentile_interval
from aligneval.metrics import base_metric_name, get_metric, scale_probs

CELLS_PER_CHUNK = 1_000_000  # resamples x examples per chunk (4 MB of int32 counts)
AHEAD = 2  # chunks drawn ahead of the slower model's statistics


def split_rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    """A generator per (seed, split): a split's intervals do not depend on which other splits are compared.
    `stream` > 0 gives independent extra resamples (adaptive refinement round `stream`)."""
    key = [int(seed), zlib.crc32(split.encode())]
    return np.random.default_rng(key + [int(stream)] if stream else key)


def _draw_chunks(n: int, resamples: int, rng: np.random.Generator, cells: int, dtype,
                 with_float: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The one place resamples are drawn: (W [c, n] in `dtype`, W as float64 or None) per chunk. Rows
    of counts of rng.integers(0, n) draws, counted by a compiled loop where the split gets the compiled
    statistics (the same counts and generator state as numpy's draw and bincount, tested)."""
    step = max(1, min(resamples, cells // max(n, 1)))
    done = 0
    while done < resamples:
        c = min(step, resamples - done)
        w = compiled_counts(rng, n, c) if dtype == np.int32 else None
        if w is None:
            draws = rng.integers(0, n, size=(c, n))
            w = np.empty((c, n), dtype=dtype)
            for r in range(c):
                w[r] = np.bincount(draws[r], minlength=n)
        yield w, (w.astype(np.float64) if with_float else None)
        done += c


def count_chunks(n: int, resamples: int, rng: np.random.Generator,
                 cells: int = CELLS_PER_CHUNK) -> Iterator[np.ndarray]:
    """Yield int64 chunks W [c, n] of bootstrap counts, `resamples` rows in total. Resample-major, so
    each resample's cumulative sums and gathers run over contiguous memory."""
    for w, _ in _draw_chunks(n, resamples, rng, cells, np.int64, False):
        yield w


_BLAS: list = []  # one threadpoolctl controller per process: finding the BLAS libraries reads /proc maps


def _single_thread_blas():
    """The products here are skinny (a few columns): OpenBLAS threads cost more than they give, and
    on a busy machine their spin-waiting makes them 10-40x slower. One thread is fast everywhere."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


SERIAL_CELLS = 4_000_000  # below this many resample x example cells a split runs in this thread
STAT_CELLS = 500_000  # resample x example cells per statistics call (a chunk is drawn whole, then split)


def run_chunk(stats: dict[str, Statistic], w: np.ndarray, wf: np.ndarray | None, work: dict) -> list[np.ndarray]:
    """One side's statistics on one chunk, sharing one cache (sorted counts, masses, the float copy
    `wf`) per block of rows. Each numpy call takes a whole block: with two model threads and the
    drawing thread on two cores, many short calls would spend their time handing the GIL around, while
    blocks of STAT_CELLS keep both models' work arrays (~8 per model) inside the shared L3 cache
    instead of streaming them from memory: 10-15% less time for the compare stage of
    benchmarks/report_speed.py than whole 1M-cell chunks. The draw (and so every resample) is unchanged;
    row blocks change only the order in which a product's terms are summed (the last bit of brier, nll,
    and of the ECE, MCE and ACE block sums: `Ranked._block_sums`)."""
    c, n = w.shape
    step = max(1, STAT_CELLS // max(n, 1))
    blocks = []
    for i in range(0, c, step):
        cache = {"scratch": work, "float": None if wf is None else wf[i:i + step]}  # per block
        blocks.append([f(w[i:i + step], cache) for f in stats.values()])
    return blocks[0] if len(blocks) == 1 else [np.concatenate(values) for values in zip(*blocks)]


def bootstrap_sides(sides: list[dict[str, Statistic]], n: int, *, resamples: int = 1000, seed: int = 0,
                    split: str = "", stream: int = 0) -> list[dict[str, np.ndarray]]:
    """Resampled values of every statistic of every side (model) over the same resamples of one split.

    Each side's statistics run in its own worker thread (numpy releases the GIL in its loops) while
    this thread draws the next chunk; at most `AHEAD` chunks wait per side, so memory stays bounded."""
    out: list[dict[str, list]] = [{k: [] for k in side} for side in sides]

    def collect(futures):
        for side, acc, fut in zip(sides, out, futures):
            for k, v in zip(side, fut.result()):
                acc[k].append(v)

    works: list[dict] = [{} for _ in sides]
    with_float = any(getattr(f, "reads_float", True) for side in sides for f in side.values())
    chunks = _draw_chunks(n, resamples, split_rng(seed, split, stream), CELLS_PER_CHUNK, count_dtype(n), with_float)
    if n * resamples <= SERIAL_CELLS:  # small: threads cost more than they give
        with _single_thread_blas():
            for w, wf in chunks:
                for side, acc, work in zip(sides, out, works):
                    for k, v in zip(side, run_chunk(side, w, wf, work)):
                        acc[k].append(v)
        return [{k: np.concatenate(v) for k, v in acc.items()} for acc in out]
    pending: deque = deque()
    pools = [ThreadPoolExecutor(1) for _ in sides]
    try:
        with _single_thread_blas():
            for w, wf in chunks:
                pending.append([pool.submit(run_chunk, side, w, wf, work) for pool, side, work in zip(pools, sides, works)])
                if len(pending) > AHEAD:
                    collect(pending.popleft())
            while pending:
                collect(pending.popleft())
    finally:
        for pool in pools:
            pool.shutdown()
    return [{k: np.concatenate(v) for k, v in acc.items()} for acc in out]


def bootstrap_split(stats_a: dict[str, Statistic], stats_b: dict[str, Statistic], n: int, *,
                    resamples: int = 1000, seed: int = 0, split: str = "",
                    stream: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Resampled values of every metric for both models over the same resamples of one split."""
    va, vb = bootstrap_sides([stats_a, stats_b], n, resamples=resamples, seed=seed, split=split, stream=stream)
    return {k: (va[k], vb[k]) for k in stats_a}


def observed(stat: Statistic, n: int, cache: dict | None = None) -> float:
    """The statistic on the full sample (every example drawn once): the metric's own value. `cache`:
    one dict for the statistics of one model (shares their sorted counts)."""
    if cache is None:
        return float(stat(np.ones((1, n), dtype=np.int64), None)[0])
    ones = cache.setdefault("ones", np.ones((1, n), dtype=np.int64))
    return float(stat(ones, cache)[0])


def observed_all(stats: dict[str, Statistic], n: int) -> dict[str, float]:
    """`observed` of every statistic of one model, sharing one cache, under one single-thread BLAS
    limit (a one-row product is no work for threads, and waking them on a busy machine costs ms)."""
    cache: dict = {}
    with _single_thread_blas():
        return {k: observed(stat, n, cache) for k, stat in stats.items()}


def paired_bootstrap(metric: str, probs_a: np.ndarray, probs_b: np.ndarray, labels: np.ndarray, *,
                     resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                     temperature_a: float | None = None, temperature_b: float | None = None,
                     split: str = "") -> Interval:
    """CI of metric(b) - metric(a) over resamples of the same example ids (rows already aligned)."""
    m = get_metric(base_metric_name(metric))
    labels = np.asarray(labels, dtype=np.int64)
    delta = (m.fn(scale_probs(np.asarray(probs_b, float), temperature_b), labels)
             - m.fn(scale_probs(np.asarray(probs_a, float), temperature_a), labels))
    sa = {metric: statistic(metric, probs_a, labels, temperature_a)}
    sb = {metric: statistic(metric, probs_b, labels, temperature_b)}
    va, vb = bootstrap_split(sa, sb, len(labels), resamples=resamples, seed=seed, split=split)[metric]
    return percentile_interval(float(delta), vb - va, confidence)


def mean_difference_replicates(x: np.ndarray, y: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                               stream: int = 0) -> np.ndarray:
    """Bootstrap replicates of mean(y - x) over resamples of the paired rows."""
    d = np.asarray(y, float) - np.asarray(x, float)
    rng = np.random.default_rng([int(seed), int(stream)] if stream else seed)
    return np.concatenate([product(w, d) / len(d) for w in count_chunks(len(d), resamples, rng)])


def bootstrap_mean_difference(x: np.ndarray, y: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                              confidence: float = 0.95) -> Interval:
    """Paired bootstrap CI of mean(y - x) for per-example values (attack outcomes, any 0/1 score)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    vals = mean_difference_replicates(x, y, resamples=resamples, seed=seed)
    return percentile_interval(float((y - x).mean()), vals, confidence)
