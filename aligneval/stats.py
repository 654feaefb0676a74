"""Paired statistics for "is the candidate better than the baseline on the same examples?".

* Paired bootstrap: one matrix of resample counts W [resamples, n] (row r says how often example i is
  drawn in resample r) is shared by both models and every metric of a split, so each resample is the
  same multiset of example ids for both. Metrics that are sums over examples become matrix products
  (`W @ per_example`), ranking metrics become cumulative sums over one global sort; anything else falls
  back to calling the metric on the resampled rows. Each fast path is tested against the metric itself.
* Exact McNemar for accuracy (`scipy.stats.binomtest`; b + c = 0 -> p = 1, no difference).
* Several training seeds: per-seed values, mean +- sd and a seed-level t interval.
* Holm's step-down correction over a family of p-values.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from aligneval.errors import DataError

PROB_EPS = float(np.finfo(np.float64).eps)
CELLS_PER_CHUNK = 1_000_000  # examples x resamples per chunk (8 MB of float64: cache-friendly, measured best)


def get_metric(name: str):
    """`aligneval.metrics.get_metric`, importing the metric modules if the package does not yet do so."""
    try:
        from aligneval.metrics import get_metric as _get
    except ImportError:  # the metrics package without an __init__ that registers its modules
        import importlib

        for mod in ("classification", "calibration", "uncertainty"):
            importlib.import_module(f"aligneval.metrics.{mod}")
        from aligneval.metrics.base import get_metric as _get
    return _get(name)


def base_name(metric: str) -> str:
    """`ts:ece@15` -> `ece@15`; `deepwordbug:accuracy_under_attack` -> `accuracy_under_attack`."""
    return metric.rsplit(":", 1)[-1]


def apply_temperature(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """Softmax(log p / T): temperature scaling applied to stored probabilities."""
    if temperature is None or temperature == 1.0:
        return probs
    z = np.log(np.clip(probs, 1e-300, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# pairing


def align_ids(ids_a: Sequence[str], ids_b: Sequence[str], split: str, names: tuple[str, str]) -> np.ndarray:
    """Index into b that puts its rows in a's order; refuse (DataError) when the id sets differ."""
    a, b = np.asarray(ids_a, dtype=object), np.asarray(ids_b, dtype=object)
    for ids, name in ((a, names[0]), (b, names[1])):
        if len(set(ids.tolist())) != len(ids):
            raise DataError(f"split '{split}': {name} has duplicate example ids; cannot pair")
    if len(a) == len(b) and np.array_equal(a, b):
        return np.arange(len(b))
    sa, sb = set(a.tolist()), set(b.tolist())
    if sa != sb:
        only_a, only_b = sorted(sa - sb), sorted(sb - sa)
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} ids only in {names[0]} (e.g. '{only_a[0]}')")
        if only_b:
            parts.append(f"{len(only_b)} ids only in {names[1]} (e.g. '{only_b[0]}')")
        raise DataError(f"split '{split}': cannot pair {names[0]} with {names[1]}: the example ids differ: "
                        + "; ".join(parts))
    pos = {v: i for i, v in enumerate(b.tolist())}
    return np.fromiter((pos[v] for v in a.tolist()), dtype=np.int64, count=len(a))


def check_fingerprints(split: str, fp_a: str | None, fp_b: str | None, names: tuple[str, str]) -> None:
    if fp_a and fp_b and fp_a != fp_b:
        raise DataError(f"split '{split}': cannot pair {names[0]} with {names[1]}: data fingerprints differ "
                        f"({fp_a[:12]} vs {fp_b[:12]}); the split's data changed between runs")


# ----------------------------------------------------------------------------------------------
# resampling


def split_rng(seed: int, split: str) -> np.random.Generator:
    """A generator per (seed, split): a split's intervals do not depend on which other splits are compared."""
    return np.random.default_rng([int(seed), zlib.crc32(split.encode())])


def count_chunks(n: int, resamples: int, rng: np.random.Generator, cells: int = CELLS_PER_CHUNK):
    """Yield W chunks [n, c] of bootstrap counts: column r says how often each example is drawn in
    resample r (each column sums to n); `resamples` columns in total. Examples-major, so matrix
    products and cumulative sums run over contiguous memory."""
    step = max(1, min(resamples, cells // max(n, 1)))
    done = 0
    while done < resamples:
        c = min(step, resamples - done)
        idx = rng.integers(0, n, size=(c, n))
        idx *= c
        idx += np.arange(c)[:, None]
        w = np.bincount(idx.ravel(), minlength=n * c).reshape(n, c).astype(np.float64)
        yield w
        done += c


# A "statistic" maps a counts chunk W [n, c] (and a per-chunk cache shared by statistics of the same
# predictions) to the c metric values of the resampled data.
Statistic = Callable[..., np.ndarray]
FAST: dict[str, Callable[..., Statistic]] = {}


def fast_path(family: str):
    def decorator(fn):
        FAST[family] = fn
        return fn

    return decorator


def _conf_hit(probs, labels):
    conf = probs.max(axis=1)
    hit = (probs.argmax(axis=1) == labels).astype(np.float64)
    return conf, hit


class Ranked:
    """One model's predictions sorted by confidence (ascending, stable) with tie groups: shared by the
    rank-based statistics (AURC, AUROC, ACE) so each chunk is gathered and accumulated once."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, like: "Ranked | None" = None):
        conf, hit = _conf_hit(probs, labels)
        self.n = len(conf)
        self.order = np.argsort(conf, kind="stable")
        self.cs = conf[self.order]
        self.es = 1.0 - hit[self.order]
        self.ends = np.r_[np.flatnonzero(self.cs[1:] != self.cs[:-1]), self.n - 1]
        # temperature scaling often keeps the confidence order (always for two classes): then the
        # count and error sums of the unscaled view are reused and only the confidence mass differs
        same = (like is not None and np.array_equal(like.order, self.order) and np.array_equal(like.es, self.es)
                and np.array_equal(like.ends, self.ends))
        self.shared = like.shared if same else id(self)

    SHIFT = float(2 ** 26)  # counts and error counts share one cumulative sum: count + SHIFT * errors
    BLOCK = 64  # rows per block for prefix sums read at a few positions only

    def _get(self, w, cache, name):
        """Per-chunk arrays in sorted order, computed once per chunk: ws (counts), wes (error counts),
        cw / ce (cumulative counts and errors). Cumulative sums are the slow step (a sequential loop), so
        the two integer-valued ones are packed into one exact float64 cumulative sum and unpacked."""
        if cache is None:
            cache = {}
        key = (self.shared, name)
        if key not in cache:
            if name == "ws":
                val = w[self.order]
            elif name == "wes":
                val = self._get(w, cache, "ws") * self.es[:, None]
            elif name in ("cw", "ce"):
                if self.n * (1.0 + self.SHIFT) >= 2.0 ** 52:  # pragma: no cover - beyond 67M examples
                    cache[(self.shared, "cw")] = self._get(w, cache, "ws").cumsum(axis=0)
                    cache[(self.shared, "ce")] = self._get(w, cache, "wes").cumsum(axis=0)
                    return cache[key]
                packed = self._get(w, cache, "wes") * self.SHIFT
                packed += self._get(w, cache, "ws")
                np.cumsum(packed, axis=0, out=packed)
                ce = np.floor(packed / self.SHIFT)  # exact: integers below 2**53, a power-of-two divisor
                packed -= ce * self.SHIFT
                cache[(self.shared, "cw")], cache[(self.shared, "ce")] = packed, ce
                return cache[key]
            else:
                raise KeyError(name)
            cache[key] = val
        return cache[key]

    def mass_before(self, w, cache, last):
        """Sum of count x confidence over sorted rows 0..last (inclusive; -1 = none) for each column:
        block sums plus a partial block, instead of a full cumulative sum."""
        key = (id(self), "blocks")
        ws = self._get(w, cache, "ws")
        n, c, b = self.n, w.shape[1], self.BLOCK
        if cache is None or key not in cache:
            x = ws * self.cs[:, None]
            m = (n // b) * b
            sums = x[:m].reshape(-1, b, c).sum(axis=1)
            before = np.vstack([np.zeros((1, c)), np.cumsum(sums, axis=0)])  # before[q] = rows < q * b
            if cache is not None:
                cache[key] = (x, before)
        else:
            x, before = cache[key]
        upto = np.asarray(last) + 1  # rows counted, any shape [..., c]
        q = upto // b
        cols = np.arange(c)
        out = before[q, cols]
        j = np.arange(b)
        rows = np.minimum(q[..., None] * b + j, n - 1)  # the partial block: at most b - 1 rows per position
        part = np.where(j < (upto - q * b)[..., None], x[rows, cols[:, None]], 0.0)
        return out + part.sum(axis=-1)

    def groups(self, w, cache):
        """Per tie group: (count, errors) [G, c] and their cumulative sums at the group ends."""
        if cache is None:
            cache = {}
        cw, ce = self._get(w, cache, "cw"), self._get(w, cache, "ce")
        if len(self.ends) == self.n:  # no ties: every row is its own group
            return self._get(w, cache, "ws"), self._get(w, cache, "wes"), cw, ce
        cw, ce = cw[self.ends], ce[self.ends]
        zero = np.zeros((1, w.shape[1]))
        return np.diff(cw, axis=0, prepend=zero), np.diff(ce, axis=0, prepend=zero), cw, ce


def _mean_of(per_example: np.ndarray) -> Statistic:
    n = len(per_example)
    return lambda w, cache=None: (per_example @ w) / n


@fast_path("accuracy")
def _accuracy(probs, labels, **_):
    return _mean_of(_conf_hit(probs, labels)[1])


@fast_path("brier")
def _brier(probs, labels, **_):
    onehot = np.eye(probs.shape[1])[labels]
    return _mean_of(((probs - onehot) ** 2).sum(axis=1))


@fast_path("nll")
def _nll(probs, labels, **_):
    p = probs[np.arange(len(labels)), labels]
    return _mean_of(-np.log(np.clip(p, PROB_EPS, 1 - PROB_EPS)))


def _binned(probs, labels, bins):
    from aligneval.metrics.calibration import assign_bins, bin_edges

    conf, hit = _conf_hit(probs, labels)
    conf = np.clip(conf, PROB_EPS, 1 - PROB_EPS)
    idx = assign_bins(conf, bin_edges(conf, bins))
    onehot = np.zeros((len(conf), bins))
    onehot[np.arange(len(conf)), idx] = 1.0
    return onehot, conf - hit


@fast_path("ece")
def _ece(probs, labels, bins=15, **_):
    onehot, gap = _binned(probs, labels, bins)
    mat = onehot * gap[:, None]  # [n, bins]; mat.T @ w is BLAS's fast layout
    n = len(labels)
    return lambda w, cache=None: np.abs(mat.T @ w).sum(axis=0) / n


@fast_path("mce")
def _mce(probs, labels, bins=15, **_):
    onehot, gap = _binned(probs, labels, bins)
    mat = np.hstack([onehot * gap[:, None], onehot])

    def stat(w, cache=None):
        s = mat.T @ w
        gaps, counts = s[:bins], s[bins:]
        per_bin = np.abs(gaps) / np.where(counts > 0, counts, 1.0)
        return np.where(counts > 0, per_bin, 0.0).max(axis=0)

    return stat


@fast_path("macro_f1")
def _macro_f1(probs, labels, **_):
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    rows = []
    for c in range(k):
        rows += [(pred == c) & (labels == c), pred == c, labels == c]
    mat = np.stack(rows, axis=1).astype(np.float64)

    def stat(w, cache=None):
        s = (mat.T @ w).reshape(k, 3, w.shape[1])
        tp, npred, ntrue = s[:, 0], s[:, 1], s[:, 2]
        denom = npred + ntrue
        present = denom > 0
        f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
        return f1.sum(axis=0) / present.sum(axis=0)

    return stat


@fast_path("aurc")
def _aurc(probs, labels, ranked: Ranked | None = None, **_):
    """Thresholds from high to low confidence: a tie group g (ascending index) is kept together with
    every higher group, so kept = n - (count below g) and errors likewise."""
    r = ranked or Ranked(probs, labels)

    def stat(w, cache=None):
        count, err, cw, ce = r.groups(w, cache)
        n, e_total = cw[-1], ce[-1]
        kept = np.subtract(cw, count)  # count below the group...
        np.subtract(n, kept, out=kept)  # ...so kept = everything from this group up
        errors = np.subtract(ce, err)
        np.subtract(e_total, errors, out=errors)
        np.multiply(errors, count, out=errors)
        np.divide(errors, kept, out=errors, where=kept > 0)  # kept >= count; where kept = 0, errors is 0
        return errors.sum(axis=0) / n

    return stat


@fast_path("auroc_error")
def _auroc_error(probs, labels, ranked: Ranked | None = None, **_):
    """Mann-Whitney U of confidence, correct vs wrong, ties counting one half, per resample."""
    r = ranked or Ranked(probs, labels)

    def stat(w, cache=None):
        count, neg, cw, ce = r.groups(w, cache)
        pos = np.subtract(count, neg)
        below = np.multiply(neg, -0.5)
        np.add(below, ce, out=below)  # negatives strictly below + half the tied ones
        u = np.einsum("ij,ij->j", pos, below)
        n_neg = ce[-1]
        n_pos = cw[-1] - n_neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)

    return stat


@fast_path("ace")
def _ace(probs, labels, bins=15, ranked: Ranked | None = None, **_):
    """Equal-mass bins move with each resample: the quantile edges (np.quantile, linear) of the
    resampled confidences are read off the cumulative counts by a vectorized binary search; bin sums
    are differences of cumulative sums at the bin ends."""
    r = ranked or Ranked(probs, labels)
    n = r.n
    h = (n - 1) * np.linspace(0.0, 1.0, bins + 1)
    lo = np.floor(h).astype(np.int64)
    frac = h - lo
    targets = np.r_[lo, np.minimum(lo + 1, n - 1)]  # order statistics needed, 0-based

    def stat(w, cache=None):
        if cache is None:
            cache = {}
        cw = r._get(w, cache, "cw")
        ce = r._get(w, cache, "ce")
        c = w.shape[1]
        cols = np.arange(c)
        # first sorted row i with cw[i] > j, for every target j and column, by bisection
        left = np.zeros((len(targets), c), dtype=np.int64)
        right = np.full((len(targets), c), n - 1, dtype=np.int64)
        tj = targets[:, None].astype(np.float64)
        while np.any(left < right):
            mid = (left + right) // 2
            above = cw[mid, cols] > tj
            right = np.where(above, mid, right)
            left = np.where(above, left, mid + 1)
        vals = r.cs[left]
        x_lo, x_hi = vals[: bins + 1], vals[bins + 1:]
        edges = x_lo + frac[:, None] * (x_hi - x_lo)
        cut = np.searchsorted(r.cs, edges[1:-1].ravel(), side="left").reshape(bins - 1, c)
        last = np.vstack([cut, np.full((1, c), n)]) - 1  # last sorted row of each bin (-1: before the first)
        safe = np.maximum(last, 0)
        take = lambda m: np.where(last >= 0, m[safe, cols], 0.0)  # noqa: E731
        zero = np.zeros((1, c))
        count = np.diff(take(cw), axis=0, prepend=zero)
        mass = r.mass_before(w, cache, last)
        s_conf = np.diff(mass, axis=0, prepend=zero)
        s_hit = count - np.diff(take(ce), axis=0, prepend=zero)
        full = count > 0
        gap = np.where(full, np.abs(s_hit - s_conf) / np.where(full, count, 1.0), 0.0)
        return gap.sum(axis=0) / full.sum(axis=0)

    return stat


def generic_statistic(metric_fn, probs, labels) -> Statistic:
    """Fallback: call the metric on the rows each resample draws (slow, exact for any metric)."""
    n = len(labels)
    ar = np.arange(n)

    def stat(w, cache=None):
        out = np.empty(w.shape[1])
        for r in range(w.shape[1]):
            idx = np.repeat(ar, w[:, r].astype(np.int64))
            out[r] = metric_fn(probs[idx], labels[idx])
        return out

    return stat


RANKED_FAMILIES = {"aurc", "auroc_error", "ace"}


def statistic(metric: str, probs: np.ndarray, labels: np.ndarray, temperature: float | None = None,
              ranked: dict | None = None) -> Statistic:
    """The bootstrap statistic for a record's metric on stored predictions (fast path when one exists).
    `ranked`: a dict the caller keeps per model, so statistics of the same (probs, temperature) share
    one sorted view."""
    name = base_name(metric)
    m = get_metric(name)
    family, _, param = name.partition("@")
    scaled = apply_temperature(np.asarray(probs, dtype=np.float64), temperature)
    labels = np.asarray(labels, dtype=np.int64)
    if family in FAST:
        kwargs = {"bins": int(param)} if param else dict(m.params or {})
        if family in RANKED_FAMILIES:
            if ranked is None:
                ranked = {}
            if temperature not in ranked:
                ranked[temperature] = Ranked(scaled, labels, like=next(iter(ranked.values()), None))
            kwargs["ranked"] = ranked[temperature]
        return FAST[family](scaled, labels, **kwargs)
    if m.fn is None:
        raise DataError(f"metric '{metric}' cannot be recomputed from one split's predictions")
    return generic_statistic(m.fn, scaled, labels)


# ----------------------------------------------------------------------------------------------
# intervals and tests


@dataclass(frozen=True)
class Interval:
    delta: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    resamples: int = 0
    extra: dict = field(default_factory=dict)


def percentile_interval(observed: float, deltas: np.ndarray, confidence: float = 0.95,
                        method: str = "paired bootstrap") -> Interval:
    """Percentile CI of the bootstrap deltas and the two-sided bootstrap p-value of 'no difference':
    p = 2 min(P*(d <= 0), P*(d >= 0)) with the (count + 1) / (R + 1) correction, capped at 1."""
    d = deltas[np.isfinite(deltas)]
    if len(d) == 0:
        return Interval(observed, None, None, None, method, 0)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    r = len(d)
    p = min(1.0, 2 * min((np.sum(d <= 0) + 1) / (r + 1), (np.sum(d >= 0) + 1) / (r + 1)))
    if np.all(d == 0):
        p = 1.0
    return Interval(observed, float(lo), float(hi), float(p), method, r)


def _single_thread_blas():
    """The products here are skinny (a few columns): OpenBLAS threads cost more than they give, and
    on a busy machine their spin-waiting makes them 10-40x slower. One thread is fast everywhere."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def bootstrap_split(stats_a: dict[str, Statistic], stats_b: dict[str, Statistic], n: int, *,
                    resamples: int = 1000, seed: int = 0, split: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Resampled values of every metric for both models over the same resamples of one split."""
    rng = split_rng(seed, split)
    out = {k: ([], []) for k in stats_a}
    from concurrent.futures import ThreadPoolExecutor

    def side(stats_x, w, cache):
        return [stats_x[k](w, cache) for k in stats_x]

    # the two models' statistics run in two threads: numpy releases the GIL in the heavy loops
    with _single_thread_blas(), ThreadPoolExecutor(max_workers=2) as pool:
        for w in count_chunks(n, resamples, rng):
            # sorted views and cumulative sums shared by the statistics of this chunk, one cache per model
            fa = pool.submit(side, stats_a, w, {})
            fb = pool.submit(side, stats_b, w, {})
            for k, va, vb in zip(stats_a, fa.result(), fb.result()):
                out[k][0].append(va)
                out[k][1].append(vb)
    return {k: (np.concatenate(a), np.concatenate(b)) for k, (a, b) in out.items()}


def paired_bootstrap(metric: str, probs_a: np.ndarray, probs_b: np.ndarray, labels: np.ndarray, *,
                     resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                     temperature_a: float | None = None, temperature_b: float | None = None,
                     split: str = "") -> Interval:
    """CI of metric(b) - metric(a) over resamples of the same example ids (rows already aligned)."""
    m = get_metric(base_name(metric))
    labels = np.asarray(labels, dtype=np.int64)
    observed = (m.fn(apply_temperature(np.asarray(probs_b, float), temperature_b), labels)
                - m.fn(apply_temperature(np.asarray(probs_a, float), temperature_a), labels))
    sa = {metric: statistic(metric, probs_a, labels, temperature_a)}
    sb = {metric: statistic(metric, probs_b, labels, temperature_b)}
    va, vb = bootstrap_split(sa, sb, len(labels), resamples=resamples, seed=seed, split=split)[metric]
    return percentile_interval(float(observed), vb - va, confidence)


def bootstrap_mean_difference(x: np.ndarray, y: np.ndarray, *, resamples: int = 1000, seed: int = 0,
                              confidence: float = 0.95) -> Interval:
    """Paired bootstrap CI of mean(y - x) for per-example values (attack outcomes, any 0/1 score)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = y - x
    rng = np.random.default_rng(seed)
    vals = np.concatenate([d @ w / len(d) for w in count_chunks(len(d), resamples, rng)])
    return percentile_interval(float(d.mean()), vals, confidence)


@dataclass(frozen=True)
class McNemar:
    b: int  # baseline right, candidate wrong
    c: int  # baseline wrong, candidate right
    p_value: float

    @property
    def no_difference(self) -> bool:
        return self.b + self.c == 0


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact McNemar test on paired correctness: binomial test of b out of b + c at 1/2."""
    from scipy.stats import binomtest

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return McNemar(0, 0, 1.0)
    return McNemar(b, c, float(min(1.0, binomtest(b, b + c, 0.5).pvalue)))


# ----------------------------------------------------------------------------------------------
# several seeds


@dataclass(frozen=True)
class SeedSummary:
    baseline: dict[str, float]
    candidate: dict[str, float]
    baseline_mean: float
    baseline_sd: float | None
    candidate_mean: float
    candidate_sd: float | None
    interval: Interval

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate,
                "baseline_mean": self.baseline_mean, "baseline_sd": self.baseline_sd,
                "candidate_mean": self.candidate_mean, "candidate_sd": self.candidate_sd,
                "method": self.interval.method}


def _sd(v: np.ndarray) -> float | None:
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def seed_summary(baseline: dict[str, float], candidate: dict[str, float], confidence: float = 0.95) -> SeedSummary:
    """Seed-level comparison: paired t over seeds both models share, else Welch's t over the means."""
    from scipy import stats as st

    a = np.array(list(baseline.values()), float)
    b = np.array(list(candidate.values()), float)
    delta = float(b.mean() - a.mean())
    shared = sorted(set(baseline) & set(candidate))
    if len(shared) >= 2 and len(shared) == len(baseline) == len(candidate):
        d = np.array([candidate[s] - baseline[s] for s in shared])
        sd = d.std(ddof=1)
        if sd == 0:
            iv = Interval(delta, delta, delta, 1.0 if delta == 0 else 0.0, "paired t over seeds")
        else:
            half = st.t.ppf(0.5 + confidence / 2, len(d) - 1) * sd / math.sqrt(len(d))
            p = float(st.ttest_1samp(d, 0.0).pvalue)
            iv = Interval(delta, delta - half, delta + half, p, "paired t over seeds")
    elif len(a) >= 2 and len(b) >= 2:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        if se == 0:
            iv = Interval(delta, delta, delta, 1.0 if delta == 0 else 0.0, "Welch t over seeds")
        else:
            df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
            half = st.t.ppf(0.5 + confidence / 2, df) * se
            p = float(st.ttest_ind(b, a, equal_var=False).pvalue)
            iv = Interval(delta, delta - half, delta + half, p, "Welch t over seeds")
    else:
        iv = Interval(delta, None, None, None, "too few seeds for an interval")
    return SeedSummary(dict(baseline), dict(candidate), float(a.mean()), _sd(a), float(b.mean()), _sd(b), iv)


# ----------------------------------------------------------------------------------------------
# multiple comparisons


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): max_{j<=i} min(1, (m - j + 1) p_(j))."""
    idx = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    out: list[float | None] = [None] * len(p_values)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def verdict(delta: float | None, p_value: float | None, higher_is_better: bool | None, alpha: float = 0.05,
            ci: tuple[float | None, float | None] = (None, None)) -> str:
    """better / worse / no-difference from the test (p < alpha) and the metric's direction.
    Without a p-value or a direction: "n/a"."""
    if delta is None or higher_is_better is None:
        return "n/a"
    if p_value is None:
        lo, hi = ci
        if lo is None or hi is None:
            return "n/a"
        significant = lo > 0 or hi < 0
    else:
        significant = p_value < alpha
    if not significant or delta == 0:
        return "no-difference"
    return "better" if (delta > 0) == bool(higher_is_better) else "worse"
