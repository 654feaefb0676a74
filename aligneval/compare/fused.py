"""The bootstrap statistics of the built-in metrics as compiled loops over each resample (numba).

chunk_stats computes each statistic with numpy calls over whole [c, n] arrays: the sorted counts,
their cumulative sums and the work arrays of AURC, AUROC and the confidence-mass sums are written out
and read back, about ten [c, n] arrays per model, and the two model threads contend for one memory
bus. Here each resample is one row handled start to finish while it sits in cache (aligneval.compare
.kernels): its counts in confidence order with their cumulative counts and errors (integers, exact,
as in chunk_stats), AURC's and AUROC's sums, the count x value sums of accuracy, brier, nll and
macro-F1, block prefix sums of count x confidence, and from those the values ECE, MCE and ACE read.
Each statistic equals chunk_stats' up to the order of float additions (tests hold both to the metric
itself at rtol 1e-10, on the same counts). On benchmarks/report_speed.py's test split it takes about
half of chunk_stats' time per model.

A `Fusion` collects the requests of one model's statistics (kept in the `ranked` dict chunk_stats
shares between them), groups them by confidence order (`Plan`) and runs each plan once per block.
Without numba nothing registers and chunk_stats' numpy statistics run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from aligneval.compare.chunk_stats import (
    Ranked, Statistic, ace_ranks, auroc_of, bin_ends, brier_terms, ece_of, macro_f1_of, mce_of, nll_terms)
from aligneval.compare.kernels import B, block, draw_counts, numba
from aligneval.metrics import correct

FUSED: dict[str, Callable[..., Statistic]] = {}  # by metric family, as chunk_stats.FAST
NO_SUMS = (np.zeros((0, 0), np.int8), np.zeros((0, 0)))  # a plan that does not carry the linear sums


@dataclass(frozen=True)
class BlockSums:
    """What the kernel gives for each row of a block: the resample's size and errors, the linear sums
    (0/1 `ilin`, float `flin`), AURC's sum and twice AUROC's U, the cumulative counts, errors and
    confidence masses at the checkpoints, and each ACE request's value."""

    tot: np.ndarray
    err: np.ndarray
    ilin: np.ndarray
    flin: np.ndarray
    aurc: np.ndarray
    twice_u: np.ndarray
    cw: np.ndarray
    ce: np.ndarray
    mass: np.ndarray
    ace: np.ndarray


class Plan:
    """The requests on one confidence order (one `Ranked.shared` group; the identity for linear sums
    alone)."""

    def __init__(self, order: np.ndarray, es: np.ndarray, ends: np.ndarray | None):
        n = len(order)
        self.order = np.ascontiguousarray(order, dtype=np.uint32)  # unsigned: no wrap-around guard
        self.es = np.ascontiguousarray(es, dtype=np.int32)
        self.tied = ends is not None
        self.ends = np.ascontiguousarray(np.arange(n) if ends is None else ends, dtype=np.int64)
        self.ranked = False  # AURC or AUROC asked
        self.mass: list[np.ndarray] = []  # confidences in sorted order
        self.ckpt: set[int] = set()
        self.ace: list[tuple[int, int]] = []  # (mass index of the confidences, bins)
        self.packed = None

    def mass_index(self, values: np.ndarray) -> int:
        for i, v in enumerate(self.mass):
            if v is values:
                return i
        self.mass.append(values)
        self.packed = None
        return len(self.mass) - 1

    def pack(self) -> dict:
        """The requests as the kernel's arrays, built again only after a new request."""
        if self.packed is None:
            n = len(self.order)
            ckpt = np.array(sorted(self.ckpt), dtype=np.int64)
            bins = max([b for _, b in self.ace], default=1)
            lo = np.zeros((len(self.ace), bins + 1), dtype=np.int64)
            hi, frac = np.zeros_like(lo), np.zeros(lo.shape)
            for t, (_, b) in enumerate(self.ace):
                lo[t, : b + 1], hi[t, : b + 1], frac[t, : b + 1] = ace_ranks(n, b)
            self.packed = dict(
                mass=np.array(self.mass, dtype=np.float64).reshape(len(self.mass), n),
                ckpt=ckpt, where={int(j): i for i, j in enumerate(ckpt)},
                ace_vec=np.array([m for m, _ in self.ace], dtype=np.int64), ace_lo=lo, ace_hi=hi, ace_frac=frac,
                ace_bins=np.array([b for _, b in self.ace], dtype=np.int64))
        return self.packed

    def run(self, w: np.ndarray, work: dict, ilin: np.ndarray, flin: np.ndarray) -> BlockSums:
        """The kernel on one block of rows, with the linear sums `ilin` [ki, n] (int8) and `flin` [kf, n]
        (float64) in the predictions' order; its one row of scratch lives in `work` across blocks."""
        pk = self.pack()
        c, n = w.shape
        v, p, a = len(pk["mass"]), len(pk["ckpt"]), len(pk["ace_vec"])
        dtype = np.int32  # every cumulative count fits (chunk_stats.count_dtype, for any split in memory)
        shapes = {"ws": ((n,), dtype), "cw": ((n + 1,), dtype), "ce": ((n + 1,), dtype),
                  "prefix": ((v, n // B + 1), np.float64)}
        scratch = []
        for name, (shape, dt) in shapes.items():  # one row's worth, reused row after row
            buf = work.get(("fused", name))
            if buf is None or buf.shape != shape or buf.dtype != dt:
                buf = work[("fused", name)] = np.empty(shape, dt)
            scratch.append(buf)
        out = BlockSums(tot=np.empty(c, np.int64), err=np.empty(c, np.int64), ilin=np.empty((c, len(ilin)), np.int64),
                        flin=np.empty((c, len(flin))), aurc=np.empty(c), twice_u=np.empty(c, np.int64),
                        cw=np.empty((c, p), np.int64), ce=np.empty((c, p), np.int64), mass=np.empty((c, v, p)),
                        ace=np.empty((c, a)))
        block(np.ascontiguousarray(w, dtype=dtype), self.order, self.es, self.ends, self.tied, ilin, flin,
              pk["mass"], pk["ckpt"], pk["ace_vec"], pk["ace_lo"], pk["ace_hi"], pk["ace_frac"], pk["ace_bins"],
              self.ranked, out.tot, out.err, out.ilin, out.flin, out.aurc, out.twice_u, out.cw, out.ce, out.mass,
              out.ace, *scratch)
        return out


class Fusion:
    """Every fused statistic of one model: their requests, grouped into plans by confidence order, and
    one pass per plan and block. The linear sums (accuracy, brier, nll, macro-F1) do not depend on an
    order, so they ride on the first plan's pass (or on an identity plan when no statistic ranks)."""

    def __init__(self):
        self.plans: dict = {}
        self.ilin: list[np.ndarray] = []
        self.flin: list[np.ndarray] = []
        self._linear = None  # the packed linear vectors

    def plan(self, r: Ranked) -> Plan:
        if r.shared not in self.plans:
            self.plans[r.shared] = Plan(r.order, r.es, r.ends if r.ties else None)
        return self.plans[r.shared]

    def linear(self, values: np.ndarray, exact: bool = False):
        """Register count x values summed over each resample (`exact`: 0/1 values, summed as integers);
        returns a reader (w, cache) -> [c]."""
        kind = "ilin" if exact else "flin"
        getattr(self, kind).append(np.asarray(values, np.int8 if exact else np.float64))
        self._linear = None
        i = len(getattr(self, kind)) - 1
        return lambda w, cache: getattr(self.run(w, cache)["linear"], kind)[:, i]

    def run(self, w: np.ndarray, cache: dict | None) -> dict:
        """{id(plan): BlockSums, "linear": the host plan's BlockSums} on this block of rows, computed once
        per block (the per-block cache)."""
        if cache is not None and (id(self), "fused") in cache:
            return cache[(id(self), "fused")]
        n = w.shape[1]
        if not self.plans:
            self.plans["identity"] = Plan(np.arange(n), np.zeros(n), None)
        if self._linear is None:
            self._linear = (np.array(self.ilin, np.int8).reshape(len(self.ilin), n),
                            np.array(self.flin, np.float64).reshape(len(self.flin), n))
        work = cache.setdefault("scratch", {}) if cache is not None else {}
        plans = list(self.plans.values())
        out = {id(plan): plan.run(w, work, *(self._linear if i == 0 else NO_SUMS)) for i, plan in enumerate(plans)}
        out["linear"] = out[id(plans[0])]
        if cache is not None:
            cache[(id(self), "fused")] = out
        return out


def warm() -> None:
    """Load the compiled loops (from numba's cache, or compile them) with the argument types of every
    real call, so that the first bootstrap block does not wait for it."""
    if numba is not None:
        Plan(np.arange(2), np.zeros(2), None).run(np.ones((1, 2), np.int32), {}, *NO_SUMS)
        draw_counts(np.random.default_rng(0), 2, 1)


def fusion_of(views: dict) -> Fusion:
    """The model's Fusion, kept in the dict chunk_stats shares between the model's statistics."""
    return views.setdefault(("fusion",), Fusion())


def fused_path(family: str):
    """Register a family's fused statistic (only where numba imports: engines falls back to FAST)."""
    def decorator(fn):
        if numba is not None:
            FUSED[family] = fn
        return fn

    return decorator


def _ranked(probs, labels, ranked):
    return ranked if ranked is not None else Ranked(probs, labels)


@fused_path("accuracy")
def _accuracy(probs, labels, views, **_):
    read = fusion_of(views).linear(correct(probs, labels), exact=True)
    return lambda w, cache=None: read(w, cache) / len(labels)


def _mean_of(values, views):
    read = fusion_of(views).linear(values)
    return lambda w, cache=None: read(w, cache) / len(values)


@fused_path("brier")
def _brier(probs, labels, views, **_):
    return _mean_of(brier_terms(probs, labels), views)


@fused_path("nll")
def _nll(probs, labels, views, **_):
    return _mean_of(nll_terms(probs, labels), views)


@fused_path("macro_f1")
def _macro_f1(probs, labels, views, **_):
    """Per class: true positives, predicted and true counts (0/1 sums, exact), then chunk_stats' F1."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    fusion = fusion_of(views)
    reads = [fusion.linear((pred == c) & (labels == c), exact=True) for c in range(k)]
    reads += [fusion.linear(pred == c, exact=True) for c in range(k)]
    reads += [fusion.linear(labels == c, exact=True) for c in range(k)]

    def stat(w, cache=None):
        s = np.array([read(w, cache) for read in reads])
        return macro_f1_of(s[:k], s[k:2 * k], s[2 * k:])

    return stat


def _fixed_bins(r: Ranked, views, bins: int):
    """Equal-width bins are runs of the confidence order: (count, hits, confidence mass) [bins, c] from
    the cumulative sums at each bin's last sorted position, as chunk_stats reads them."""
    plan = fusion_of(views).plan(r)
    last = bin_ends(r.ccs, bins)
    drawn = last >= 0
    plan.ckpt.update(int(j) for j in last[drawn])
    m = plan.mass_index(r.ccs)
    plan.packed = None

    def sums(w, cache):
        out = fusion_of(views).run(w, cache)[id(plan)]
        cols = [plan.packed["where"][int(j)] for j in last[drawn]]
        c = w.shape[0]
        cw, ce, mass = (np.zeros((bins, c)) for _ in range(3))
        cw[drawn], ce[drawn], mass[drawn] = out.cw[:, cols].T, out.ce[:, cols].T, out.mass[:, m, cols].T
        zero = np.zeros((1, c))
        count = np.diff(cw, axis=0, prepend=zero)
        return count, count - np.diff(ce, axis=0, prepend=zero), np.diff(mass, axis=0, prepend=zero)

    return sums


@fused_path("ece")
def _ece(probs, labels, views, bins=15, ranked=None, **_):
    sums = _fixed_bins(_ranked(probs, labels, ranked), views, bins)
    return lambda w, cache=None: ece_of(*sums(w, cache)[1:], len(labels))


@fused_path("mce")
def _mce(probs, labels, views, bins=15, ranked=None, **_):
    sums = _fixed_bins(_ranked(probs, labels, ranked), views, bins)

    return lambda w, cache=None: mce_of(*sums(w, cache))


def _ranks(probs, labels, views, ranked):
    """Ask for AURC's and AUROC's sums on the model's plan; returns a reader of its BlockSums."""
    plan = fusion_of(views).plan(_ranked(probs, labels, ranked))
    plan.ranked = True
    return lambda w, cache: fusion_of(views).run(w, cache)[id(plan)]


@fused_path("aurc")
def _aurc(probs, labels, views, ranked=None, **_):
    """Per tie group, (errors above x count) / kept, as chunk_stats._aurc, summed in the pass."""
    read = _ranks(probs, labels, views, ranked)

    def stat(w, cache=None):
        out = read(w, cache)
        return out.aurc / out.tot

    return stat


@fused_path("auroc_error")
def _auroc_error(probs, labels, views, ranked=None, **_):
    """Twice the Mann-Whitney U of confidence, correct vs wrong, summed per tie group in the pass."""
    read = _ranks(probs, labels, views, ranked)

    def stat(w, cache=None):
        out = read(w, cache)
        return auroc_of(out.twice_u, out.tot - out.err, out.err)

    return stat


@fused_path("ace")
def _ace(probs, labels, views, bins=15, ranked=None, **_):
    """Equal-mass bins from the order statistics of each resample's confidences, inside the pass."""
    r = _ranked(probs, labels, ranked)
    plan = fusion_of(views).plan(r)
    plan.ace.append((plan.mass_index(r.cs), bins))
    plan.packed = None
    i = len(plan.ace) - 1
    return lambda w, cache=None: fusion_of(views).run(w, cache)[id(plan)].ace[:, i]
