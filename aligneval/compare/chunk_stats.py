"""The bootstrap statistic of every built-in metric: a metric's values on all resamples of a chunk of
integer counts W [c, n] (row r says how often each example is drawn in resample r; each row sums to n).

Metrics that are sums over examples become matrix products (`W @ per_example`). Rank-based metrics
(AURC, AUROC, ACE) and binned calibration errors (ECE, MCE) read cumulative counts over each model's
confidence order, computed once per chunk in integers (int32 for any realistic split): an integer
cumulative sum is exact and about 8x faster than a float64 one, whose loop is bound by the latency of
floating-point addition. Anything else falls back to calling the metric on the resampled rows. Each
fast path is tested against the metric itself. The statistics of one model share a per-chunk cache
(sorted counts, confidence masses, bin sums), so each is computed once per chunk and model.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from aligneval.metrics import confidence, correct
from aligneval.metrics.calibration import PROB_EPS, assign_bins, bin_edges


def count_dtype(n: int) -> type:
    """int32 counts whenever every cumulative count fits: integer sums are exact at any width, so the
    statistics are unchanged, and gathers and sums over half the bytes run 1.5-3x faster."""
    return np.int32 if n < 2**31 else np.int64


def scratch(cache: dict | None, key, shape: tuple[int, int], dtype) -> np.ndarray:
    """A work array that lives across chunks (cache["scratch"], one per model thread): freshly
    allocated multi-MB arrays cost a page fault per 4 KB on every chunk, as much as the arithmetic."""
    if cache is None or "scratch" not in cache:
        return np.empty(shape, dtype)
    pool = cache["scratch"]
    buf = pool.get(key)
    if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
        buf = pool[key] = np.empty(shape, dtype)
    return buf[: shape[0]]


def as_float(w: np.ndarray, cache: dict | None) -> np.ndarray:
    """The chunk as float64 for BLAS products, converted once per chunk (bootstrap_sides converts it
    once for every side while drawing)."""
    if cache is None:
        return w.astype(np.float64)
    if cache.get("float") is None:
        cache["float"] = out = scratch(cache, "float", w.shape, np.float64)
        np.copyto(out, w)
    return cache["float"]


def as_counts(w: np.ndarray, cache: dict | None) -> np.ndarray:
    """The chunk in `count_dtype` (int32 for any realistic split), converted at most once per chunk."""
    dtype = count_dtype(w.shape[1])
    if w.dtype == dtype:
        return w
    if cache is None:
        return w.astype(dtype)
    if "counts" not in cache:
        cache["counts"] = out = scratch(cache, "counts", w.shape, dtype)
        np.copyto(out, w)
    return cache["counts"]


def product(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v through np.dot: the same BLAS call and the same floats, but np.dot releases the GIL while
    numpy's matmul (2.x) holds it, so the two model threads took turns on every product."""
    return np.dot(m, v)


def row_cumsum(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cumulative sums along each row of `a` into `out`, one 1-D cumsum per row: numpy (2.x) holds the
    GIL through an accumulate along an axis of a 2-D array but releases it for a 1-D one, so the
    model threads now run their sums side by side (the same sums, in the same order)."""
    for src, dst in zip(a, out):
        np.cumsum(src, dtype=out.dtype, out=dst)
    return out


# A "statistic" maps a counts chunk W [c, n] (and a per-chunk cache shared by the statistics of one
# model) to the c metric values of the resampled data.
Statistic = Callable[..., np.ndarray]
FAST: dict[str, Callable[..., Statistic]] = {}


def fast_path(family: str):
    def decorator(fn):
        FAST[family] = fn
        return fn

    return decorator


# Per-example terms and formulas both engines use (this module and aligneval.compare.fused), so that
# the two compute each metric the same way.

def brier_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each example's squared distance to its one-hot label (brier is their mean)."""
    return ((probs - np.eye(probs.shape[1])[labels]) ** 2).sum(axis=1)


def nll_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each example's negative log-likelihood, clipped as the metric clips it (nll is their mean)."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], PROB_EPS, 1 - PROB_EPS))


def macro_f1_of(tp: np.ndarray, npred: np.ndarray, ntrue: np.ndarray) -> np.ndarray:
    """Macro-F1 [c] from per-class true positives, predicted and true counts [k, c]; classes that are
    neither predicted nor present are left out, as the metric leaves them out."""
    denom = npred + ntrue
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
    return f1.sum(axis=0) / present.sum(axis=0)


def bin_ends(ccs: np.ndarray, bins: int) -> np.ndarray:
    """The last sorted position of each of `bins` equal-width bins over the sorted clipped confidences
    `ccs` (-1: an empty bin before any example): equal-width bins are runs of the confidence order."""
    idx = assign_bins(ccs, bin_edges(ccs, bins))  # non-decreasing along the sorted confidences
    return np.searchsorted(idx, np.arange(bins), side="right") - 1


def ece_of(hits: np.ndarray, mass: np.ndarray, n: int) -> np.ndarray:
    return np.abs(hits - mass).sum(axis=0) / n


def mce_of(count: np.ndarray, hits: np.ndarray, mass: np.ndarray) -> np.ndarray:
    full = count > 0
    return np.where(full, np.abs(hits - mass) / np.where(full, count, 1.0), 0.0).max(axis=0)


def auroc_of(twice_u: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """AUROC [c] from twice the Mann-Whitney U; undefined (nan) where a resample has one class only."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), twice_u / (2.0 * n_pos * n_neg), np.nan)


def ace_ranks(n: int, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.quantile's (linear) edges of `bins` equal-mass bins as order statistics of n values: edge q
    lies `frac[q]` of the way from the lo[q]-th to the hi[q]-th smallest (0-based)."""
    h = (n - 1) * np.linspace(0.0, 1.0, bins + 1)
    lo = np.floor(h).astype(np.int64)
    return lo, np.minimum(lo + 1, n - 1), h - lo


def _conf_hit(probs, labels):
    return confidence(probs), correct(probs, labels).astype(np.float64)


class Ranked:
    """One model's predictions sorted by confidence (ascending, stable) with tie groups, shared by the
    statistics that read cumulative counts (AURC, AUROC, ACE, ECE, MCE): each chunk is gathered and
    summed once per model."""

    BLOCK = 64  # columns per block for prefix sums read at a few positions only
    SMALL = 1024  # up to this many examples a plain cumulative sum is cheaper

    def __init__(self, probs: np.ndarray, labels: np.ndarray, like: "Ranked | None" = None):
        conf, hit = _conf_hit(probs, labels)
        self.n = len(conf)
        self.order = np.argsort(conf, kind="stable")
        self.cs = conf[self.order]
        self.ccs = np.clip(self.cs, PROB_EPS, 1 - PROB_EPS)  # the calibration metrics' clipped confidence
        if np.array_equal(self.ccs, self.cs):
            self.ccs = self.cs
        self.es = (1 - hit[self.order]).astype(count_dtype(self.n))
        self.ends = np.r_[np.flatnonzero(self.cs[1:] != self.cs[:-1]), self.n - 1]
        self.ties = len(self.ends) < self.n
        # temperature scaling often keeps the confidence order (always for two classes): then the
        # counts of the unscaled view are reused and only the confidence mass differs
        same = (like is not None and np.array_equal(like.order, self.order) and np.array_equal(like.es, self.es)
                and np.array_equal(like.ends, self.ends))
        self.shared = like.shared if same else id(self)
        self.masses = like.masses if same else MassVectors(self.BLOCK)
        self.masses.add(self.cs)
        self.masses.add(self.ccs)

    def counts(self, w, cache):
        """(ws, wes, cw, ce) [c, n] in sorted order: counts, error counts and their inclusive cumulative
        sums, all integers (`count_dtype`) and exact."""
        return self._sums(w, cache)[0]

    def exclusive(self, w, cache):
        """(cwx, cex) [c, n]: the cumulative sums before each sorted position (views of the same
        buffers as the inclusive ones, one column over)."""
        return self._sums(w, cache)[1]

    def _sums(self, w, cache):
        key = (self.shared, "counts")
        if cache is None or key not in cache:
            small = as_counts(w, cache)
            dtype = small.dtype
            c, n = w.shape
            ws, wes = (scratch(cache, (self.shared, name), w.shape, dtype) for name in ("ws", "wes"))
            cwb, ceb = (scratch(cache, (self.shared, name), (c, n + 1), dtype) for name in ("cw", "ce"))
            # mode "clip": `order` is a permutation, so nothing is clipped; with `out`, the default
            # mode "raise" writes through a buffer and copies it (numpy's docs): a third slower here
            np.take(small, self.order, axis=1, out=ws, mode="clip")
            np.multiply(ws, self.es, out=wes)
            cwb[:, 0] = ceb[:, 0] = 0
            row_cumsum(ws, cwb[:, 1:])
            row_cumsum(wes, ceb[:, 1:])
            val = ((ws, wes, cwb[:, 1:], ceb[:, 1:]), (cwb[:, :-1], ceb[:, :-1]))
            if cache is None:
                return val
            cache[key] = val
        return cache[key]

    def groups(self, w, cache):
        """Per tie group: (count, errors) [c, G] and their cumulative sums at the group ends."""
        ws, wes, cw, ce = self.counts(w, cache)
        if not self.ties:  # every row is its own group
            return ws, wes, cw, ce
        cw, ce = cw[:, self.ends], ce[:, self.ends]
        zero = np.zeros((cw.shape[0], 1), dtype=cw.dtype)
        return np.diff(cw, axis=1, prepend=zero), np.diff(ce, axis=1, prepend=zero), cw, ce

    def _block_sums(self, w, cache):
        """The sorted counts as float64 [c, n] and, for every confidence vector of `masses`, the block
        prefix sums of count x confidence [vectors, c, blocks + 1] (before[.., q] = columns < q * b),
        once per chunk for all the views sharing these counts: one einsum reads the counts once for
        every vector (raw and temperature-scaled, clipped or not), 3-4x faster than a product array
        per vector and a sum over it. Its sums may differ from those in the last bit, and with the
        number of rows in a block (like brier's and nll's BLAS products)."""
        key = (self.shared, "block sums")
        if cache is None or key not in cache:
            ws = self.counts(w, cache)[0]
            c, b = ws.shape[0], self.BLOCK
            m = (self.n // b) * b
            wf = scratch(cache, (self.shared, "sorted float"), ws.shape, np.float64)
            np.copyto(wf, ws)
            vectors = self.masses.stacked(m)
            before = np.zeros((len(vectors), c, m // b + 1))
            np.cumsum(np.einsum("vqj,rqj->vrq", vectors, wf[:, :m].reshape(c, -1, b), optimize=True), axis=2,
                      out=before[:, :, 1:])
            if cache is None:
                return wf, before
            cache[key] = (wf, before)
        return cache[key]

    def _full(self, w, cache, values):
        """Small splits: the plain cumulative sum of count x confidence, [c, n + 1] (0 first)."""
        key = (id(values), "full")
        if cache is None or key not in cache:
            x = self.counts(w, cache)[0] * values
            full = np.zeros((x.shape[0], self.n + 1))
            row_cumsum(x, full[:, 1:])
            if cache is None:
                return full
            cache[key] = full
        return cache[key]

    def mass_before(self, w, cache, last, values=None):
        """Sum of count x confidence over sorted positions 0..last (inclusive; -1 = none), `last` [B, c]:
        block sums plus a partial block, instead of a float cumulative sum over large splits (the
        partial-block gather costs more than the sum itself below SMALL examples)."""
        values = self.cs if values is None else values
        if self.n <= self.SMALL:
            full = self._full(w, cache, values)
            return full[np.arange(full.shape[0]), np.asarray(last) + 1]
        return self.mass_at(w, cache, self.partial_blocks(last), values)

    def partial_blocks(self, last):
        """Where sorted positions 0..last end, in blocks: (whole blocks q, partial-block columns, mask)."""
        b = self.BLOCK
        upto = np.asarray(last) + 1
        q = upto // b
        j = np.arange(b)
        cols = np.minimum(q[..., None] * b + j, self.n - 1)  # the partial block: at most b - 1 positions
        return q, cols, j < (upto - q * b)[..., None]

    def mass_at(self, w, cache, blocks, values):
        """`mass_before` at positions given as `partial_blocks` (computed once for fixed positions)."""
        q, cols, mask = blocks
        wf, before = self._block_sums(w, cache)
        rows = np.arange(wf.shape[0])
        out = before[self.masses.index(values)][rows, q]
        part = np.where(mask, wf[rows[:, None], cols] * values[cols], 0.0)
        return out + part.sum(axis=-1)


class MassVectors:
    """The confidence vectors (in sorted order) whose count-weighted sums are read by the views that
    share one set of sorted counts; each view adds its own when it is made."""

    def __init__(self, block: int):
        self.block, self.vectors, self._stacked = block, [], None

    def add(self, values: np.ndarray) -> None:
        if all(values is not v for v in self.vectors):
            self.vectors.append(values)
            self._stacked = None

    def index(self, values: np.ndarray) -> int:
        return next(i for i, v in enumerate(self.vectors) if v is values)

    def stacked(self, m: int) -> np.ndarray:
        """[vectors, m / block, block]: the first m positions of each vector, in blocks."""
        if self._stacked is None:
            self._stacked = np.stack([v[:m].reshape(-1, self.block) for v in self.vectors])
        return self._stacked


def _take(m: np.ndarray, last: np.ndarray) -> np.ndarray:
    """m[r, last[b, r]] for every bin b and resample r; 0 where last is -1 (nothing yet)."""
    rows = np.arange(m.shape[0])
    return np.where(last >= 0, m[rows, np.maximum(last, 0)], 0)


def _mean_of(per_example: np.ndarray) -> Statistic:
    n = len(per_example)

    def stat(w, cache=None):
        return product(as_float(w, cache), per_example) / n

    return stat


@fast_path("accuracy")
def _accuracy(probs, labels, views: dict | None = None, temperature=None, **_):
    """When a sorted view of the same predictions exists (a calibration or uncertainty metric is
    compared too), the correct count is its total count minus its errors, exact and already summed;
    otherwise a product with the chunk (exact too: a sum of integers)."""
    hit = _conf_hit(probs, labels)[1]
    n = len(labels)

    def mean(w, cache):  # a sum of integers: exact for any number of rows
        return product(as_float(w, cache), hit) / n

    def stat(w, cache=None):
        view = (views or {}).get(("ranked", temperature))
        if view is None:
            return mean(w, cache)
        _, _, cw, ce = view.counts(w, cache)
        return (cw[:, -1] - ce[:, -1]) / n

    return stat


@fast_path("brier")
def _brier(probs, labels, **_):
    return _mean_of(brier_terms(probs, labels))


@fast_path("nll")
def _nll(probs, labels, **_):
    return _mean_of(nll_terms(probs, labels))


EXACT_BITS = 52  # float64 holds every integer below 2**53; one bit of room


def pack_indicators(cols: np.ndarray, n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """0/1 columns [m, n] packed into few float64 columns: col_j · 2^(bits·j) summed within a pack, where
    every count (at most n, since each resample has n rows) fits in `bits`. A product of counts with a
    pack is then an integer below 2**52, exact in any summation order, and its bit fields are the
    columns' counts: one pass over the chunk for up to 52 // bits columns (3 for 60,000 examples).
    Returns (packs [p, n], column indices per pack, bits)."""
    bits = max(1, int(n).bit_length())
    per = max(1, EXACT_BITS // bits)
    groups = [np.arange(i, min(i + per, len(cols))) for i in range(0, len(cols), per)]
    packs = np.array([sum(cols[j] * float(2 ** (bits * i)) for i, j in enumerate(g)) for g in groups]) \
        if groups else np.zeros((0, n))
    return packs, groups, bits


def unpack_counts(wf: np.ndarray, packed: tuple[np.ndarray, list[np.ndarray], int]) -> np.ndarray:
    """Counts [m, c] of the packed 0/1 columns on the float chunk wf [c, n], exactly."""
    packs, groups, bits = packed
    out = np.empty((sum(len(g) for g in groups), wf.shape[0]))
    low = (1 << bits) - 1
    for pack, group in zip(packs, groups):
        total = product(wf, pack).astype(np.int64)
        for i, j in enumerate(group):
            out[j] = (total >> (bits * i)) & low
    return out


@fast_path("macro_f1")
def _macro_f1(probs, labels, views: dict | None = None, temperature=None, **_):
    """Counts per class (true positives, predicted, true) from one product with the chunk; the last
    class's predicted and true counts are n minus the others' (every resample has n rows), and with a
    sorted view of these predictions its true positives are the correct count minus the others'.
    Integer sums: exact in any order, so several 0/1 columns share one BLAS product (`pack_indicators`),
    and each product is with one column (3x faster than with a few-column matrix, which OpenBLAS first
    copies into its packed layout)."""
    k, n = probs.shape[1], len(labels)
    pred = probs.argmax(axis=1)
    tp = [(pred == c) & (labels == c) for c in range(k)]
    rest = [pred == c for c in range(k - 1)] + [labels == c for c in range(k - 1)]
    full = np.stack(tp + rest).astype(np.float64)  # one row per column of counts
    short = np.concatenate([full[:k - 1], full[k:]])

    packed_full, packed_short = pack_indicators(full, n), pack_indicators(short, n)

    def sums(w, cache, packed):
        return unpack_counts(as_float(w, cache), packed)

    def stat(w, cache=None):
        view = (views or {}).get(("ranked", temperature))
        if view is None:
            s = sums(w, cache, packed_full)
            tp, s = s[:k], s[k:]
        else:
            _, _, cw, ce = view.counts(w, cache)
            s = sums(w, cache, packed_short)
            right = (cw[:, -1] - ce[:, -1])[None, :]
            tp, s = np.vstack([s[:k - 1], right - s[:k - 1].sum(axis=0, keepdims=True)]), s[k - 1:]
        npred = np.vstack([s[:k - 1], n - s[:k - 1].sum(axis=0, keepdims=True)])
        ntrue = np.vstack([s[k - 1:], n - s[k - 1:].sum(axis=0, keepdims=True)])
        return macro_f1_of(tp, npred, ntrue)

    return stat


def _fixed_bins(r: Ranked, bins: int):
    """Equal-width bins are runs of the confidence order: per bin (count, hits, confidence mass) [bins, c],
    read off the cumulative counts at the bins' last positions."""
    last = bin_ends(r.ccs, bins)
    drawn = (last >= 0)[:, None]
    at = np.maximum(last, 0)
    blocks = r.partial_blocks(last[:, None]) if r.n > r.SMALL else None

    def sums(w, cache):
        key = (id(r), "bins", bins)  # ECE and MCE of one bin count share them
        if cache is not None and key in cache:
            return cache[key]
        _, _, cw, ce = r.counts(w, cache)
        zero = np.zeros((1, w.shape[0]))
        count = np.diff(np.where(drawn, cw[:, at].T, 0), axis=0, prepend=zero)  # cw at each bin's last position
        hits = count - np.diff(np.where(drawn, ce[:, at].T, 0), axis=0, prepend=zero)
        if blocks is None:
            cum = r.mass_before(w, cache, np.broadcast_to(last[:, None], (bins, w.shape[0])), r.ccs)
        else:
            cum = r.mass_at(w, cache, blocks, r.ccs)
        mass = np.diff(cum, axis=0, prepend=zero)
        if cache is not None:
            cache[key] = (count, hits, mass)
        return count, hits, mass

    return sums


@fast_path("ece")
def _ece(probs, labels, bins=15, ranked: Ranked | None = None, **_):
    sums = _fixed_bins(ranked or Ranked(probs, labels), bins)
    n = len(labels)

    def stat(w, cache=None):
        _, hits, mass = sums(w, cache)
        return ece_of(hits, mass, n)

    return stat


@fast_path("mce")
def _mce(probs, labels, bins=15, ranked: Ranked | None = None, **_):
    sums = _fixed_bins(ranked or Ranked(probs, labels), bins)

    def stat(w, cache=None):
        return mce_of(*sums(w, cache))

    return stat


@fast_path("aurc")
def _aurc(probs, labels, ranked: Ranked | None = None, **_):
    """Thresholds from high to low confidence: a tie group is kept together with every higher group, so
    kept = n - (count below the group) and errors likewise; exact integers until the division."""
    r = ranked or Ranked(probs, labels)

    def stat(w, cache=None):
        count, err, cw, ce = r.groups(w, cache)
        n, e_total = cw[:, -1:], ce[:, -1:]
        if r.ties:
            kept = np.subtract(n, cw, out=scratch(cache, "aurc:kept", cw.shape, cw.dtype))
            kept += count  # everything from this group up
            errors = np.subtract(e_total, ce, out=scratch(cache, "aurc:errors", cw.shape, ce.dtype))
            errors += err
        else:  # every row its own group: the exclusive sums are the counts below
            cwx, cex = r.exclusive(w, cache)
            kept = np.subtract(n, cwx, out=scratch(cache, "aurc:kept", cw.shape, cw.dtype))
            errors = np.subtract(e_total, cex, out=scratch(cache, "aurc:errors", cw.shape, ce.dtype))
        np.maximum(kept, 1, out=kept)  # kept = 0 only above the last drawn example, where errors = 0
        risk = scratch(cache, "aurc:risk", cw.shape, np.float64)
        most = int(e_total.max(initial=0))  # errors x count <= most x (n, or the largest count)
        if most * r.n <= np.iinfo(errors.dtype).max or most * int(count.max(initial=0)) <= np.iinfo(errors.dtype).max:
            errors *= count  # exact integers; divided as floats like the int64 product before
            np.divide(errors, kept, out=risk)
        else:  # errors x count (<= n^2 < 2^53) is exact as a float product: the same float
            np.multiply(errors, count, out=risk, dtype=np.float64)
            risk /= kept
        return risk.sum(axis=1) / n[:, 0]

    return stat


@fast_path("auroc_error")
def _auroc_error(probs, labels, ranked: Ranked | None = None, **_):
    """Mann-Whitney U of confidence, correct vs wrong, ties counting one half, per resample:
    2U = sum over groups of correct x (2 x errors up to the group - errors in the group), in integers."""
    r = ranked or Ranked(probs, labels)

    # sums of pos x errors are at most n_pos x n_neg <= n^2 / 4: in the count type when that fits
    acc = count_dtype(r.n)
    if r.n * r.n // 4 >= np.iinfo(acc).max:
        acc = np.int64

    def stat(w, cache=None):
        count, neg, cw, ce = r.groups(w, cache)
        pos = np.subtract(count, neg, out=scratch(cache, "auroc:pos", cw.shape, cw.dtype))
        twice_u = 2 * np.einsum("ij,ij->i", pos, ce, dtype=acc).astype(np.int64)
        if r.ties:  # without ties a group is all correct or all wrong, so pos x neg = 0
            twice_u -= np.einsum("ij,ij->i", pos, neg, dtype=acc).astype(np.int64)
        n_neg = ce[:, -1].astype(np.int64)
        return auroc_of(twice_u, cw[:, -1] - n_neg, n_neg)

    return stat


@fast_path("ace")
def _ace(probs, labels, bins=15, ranked: Ranked | None = None, **_):
    """Equal-mass bins move with each resample: the quantile edges (np.quantile, linear) of the
    resampled confidences are order statistics found by binary search in the cumulative counts; bin
    sums are differences of cumulative sums at the bin ends."""
    r = ranked or Ranked(probs, labels)
    n = r.n
    lo, hi, frac = ace_ranks(n, bins)
    targets = np.r_[lo, hi].astype(count_dtype(n))  # order statistics needed, 0-based

    def order_stats(cw, cache):
        """Sorted position of the j-th smallest resampled value: the first position whose count exceeds
        j; the same for every view sharing these counts (raw and temperature-scaled)."""
        key = (r.shared, "ace", bins)
        if cache is not None and key in cache:
            return cache[key]
        pos = np.stack([np.searchsorted(row, targets, side="right") for row in cw], axis=1)
        if cache is not None:
            cache[key] = pos
        return pos

    def stat(w, cache=None):
        _, _, cw, ce = r.counts(w, cache)
        c = w.shape[0]
        pos = order_stats(cw, cache)
        vals = r.cs[pos]
        x_lo, x_hi = vals[: bins + 1], vals[bins + 1:]
        edges = x_lo + frac[:, None] * (x_hi - x_lo)
        cut = np.searchsorted(r.cs, edges[1:-1].ravel(), side="left").reshape(bins - 1, c)
        last = np.vstack([cut, np.full((1, c), n)]) - 1  # last sorted position of each bin (-1: none)
        zero = np.zeros((1, c))
        count = np.diff(_take(cw, last), axis=0, prepend=zero)
        s_conf = np.diff(r.mass_before(w, cache, last), axis=0, prepend=zero)
        s_hit = count - np.diff(_take(ce, last), axis=0, prepend=zero)
        full = count > 0
        gap = np.where(full, np.abs(s_hit - s_conf) / np.where(full, count, 1.0), 0.0)
        return gap.sum(axis=0) / full.sum(axis=0)

    return stat


RANKED_FAMILIES = {"aurc", "auroc_error", "ace", "ece", "mce"}


def generic_statistic(metric_fn, probs, labels) -> Statistic:
    """Fallback: call the metric on the rows each resample draws (slow, exact for any metric)."""
    ar = np.arange(len(labels))

    def stat(w, cache=None):
        out = np.empty(w.shape[0])
        for i, row in enumerate(w):
            idx = np.repeat(ar, row)
            out[i] = metric_fn(probs[idx], labels[idx])
        return out

    return stat
