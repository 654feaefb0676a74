"""The compiled loops behind aligneval.compare.fused (numba, the `fast` extra).

Per row of counts (one resample): `_gather` puts the counts in a model's confidence order with their
cumulative counts and errors (integers, exact); `_rank_sums` / `_rank_sums_tied` give AURC's and
AUROC's sums; `_dot` sums count x value over a range, vectorized; `_block` runs them for every row of
a block and reads the cumulative sums at the positions ECE and MCE need; `_ace_row` finds each
resample's equal-mass bins. `draw_counts` draws the resamples themselves, exactly as numpy does.
Each loop is written so the compiler vectorizes it (slices instead of offset indexing, branch-free
bodies, float copies of integers below 2**53): written naively, the same loops ran 3-5x slower than
numpy (benchmarks/README.md, report_speed, session 14).
"""

from __future__ import annotations

import numpy as np

try:  # numba is optional: without it aligneval.compare.fused registers nothing
    import numba
except ImportError:  # pragma: no cover - the numpy engine's tests run either way
    numba = None

B = 64  # sorted positions per block of the confidence-mass prefix sums


def _isum(row, ind):
    """sum(row * ind) for 0/1 int8 `ind`: an integer sum, which the compiler vectorizes; exact."""
    acc = 0
    for i in range(row.shape[0]):
        acc += row[i] * np.int64(ind[i])
    return acc


def _dot(counts, values, lo, hi):
    """sum(counts[lo:hi] * values[lo:hi]), compiled with reassociation allowed so that the compiler
    vectorizes it (its last bit depends on the vector width, as a BLAS product's does). Slices first:
    indexing from `lo` makes the compiler guard every index against wrap-around, 5x slower."""
    c = counts[lo:hi]
    x = values[lo:hi]
    acc = 0.0
    for i in range(c.shape[0]):
        acc += c[i] * x[i]
    return acc


def _gather(row, order, es, ws, cw, ce):
    """The row's counts in sorted order and their inclusive cumulative counts and errors (index j + 1 =
    through sorted position j), integers and exact."""
    total = 0
    errors = 0
    cw[0] = 0
    ce[0] = 0
    for j in range(order.shape[0]):
        x = row[order[j]]
        ws[j] = x
        total += x
        errors += x * es[j]
        cw[j + 1] = total
        ce[j + 1] = errors


def _rank_sums(ws, es, cw, ce):
    """Without ties: AURC's sum of (errors above x count) / kept and twice AUROC's U, per sorted
    position. Branch-free loops over float copies of the integers (all below 2**53, so exact, and the
    quotient is rounded once, as in chunk_stats), which the compiler vectorizes."""
    n = ws.shape[0]
    rows = np.float64(cw[n])
    e_total = np.float64(ce[n])
    below, err_below, err_through = cw[:n], ce[:n], ce[1:]
    risk = 0.0
    for j in range(n):
        risk += (e_total - err_below[j]) * ws[j] / max(rows - below[j], 1.0)
    u2 = 0
    for j in range(n):
        x = np.int64(ws[j])
        e = x * es[j]
        u2 += (x - e) * (2 * np.int64(err_through[j]) - e)
    return risk, u2


def _rank_sums_tied(ws, es, cw, ce, ends):
    """With ties: the same sums per tie group (`ends`: each group's last sorted position)."""
    rows = cw[ws.shape[0]]
    e_total = ce[ws.shape[0]]
    risk = 0.0
    u2 = 0
    start = 0
    for g in range(ends.shape[0]):
        stop = ends[g] + 1
        count = cw[stop] - cw[start]
        err = ce[stop] - ce[start]
        kept = rows - cw[start]
        risk += (e_total - ce[start]) * count / (kept if kept > 1 else 1)
        u2 += (count - err) * (2 * ce[stop] - err)
        start = stop
    return risk, u2


def _mass_upto(ws, values, prefix, stop):
    """sum(ws[:stop] * values[:stop]) from the block prefix sums plus the partial block."""
    q = stop // B
    return prefix[q] + _dot(ws, values, q * B, stop)


def _block(w, order, es, ends, tied, ilin, flin, mass, ckpt, ace_vec, ace_lo, ace_hi, ace_frac, ace_bins,
           ranked, tot, err, ilin_out, flin_out, aurc, twice_u, cw_out, ce_out, mass_out, ace_out,
           ws, cw, ce, prefix):
    """Every requested sum for each row of w [c, n], one row start to finish (its scratch rows `ws`,
    `cw`, `ce`, `prefix` stay in cache); see the module docstring."""
    c, n = w.shape
    v, kf, p, a = mass.shape[0], flin.shape[0], ckpt.shape[0], ace_vec.shape[0]
    nb = n // B
    for r in range(c):
        for t in range(ilin.shape[0]):
            ilin_out[r, t] = _isum(w[r], ilin[t])
        _gather(w[r], order, es, ws, cw, ce)
        tot[r] = cw[n]
        err[r] = ce[n]
        if ranked:
            if tied:
                aurc[r], twice_u[r] = _rank_sums_tied(ws, es, cw, ce, ends)
            else:
                aurc[r], twice_u[r] = _rank_sums(ws, es, cw, ce)
        for t in range(kf):  # count x value sums; block prefix sums of count x confidence
            flin_out[r, t] = _dot(w[r], flin[t], 0, n)
        for t in range(v):
            acc = 0.0
            prefix[t, 0] = 0.0
            for q in range(nb):
                acc += _dot(ws, mass[t], q * B, q * B + B)
                prefix[t, q + 1] = acc
        for i in range(p):
            cw_out[r, i] = cw[ckpt[i] + 1]
            ce_out[r, i] = ce[ckpt[i] + 1]
            for t in range(v):
                mass_out[r, t, i] = _mass_upto(ws, mass[t], prefix[t], ckpt[i] + 1)
        for t in range(a):
            ace_out[r, t] = _ace_row(ws, cw, ce, mass[ace_vec[t]], prefix[ace_vec[t]], ace_lo[t], ace_hi[t],
                                     ace_frac[t], ace_bins[t])


def _ace_row(ws, cw, ce, cs, prefix, lo, hi, frac, bins):
    """ACE of one resample: the quantile edges are order statistics of the resampled confidences (the
    first sorted position whose cumulative count exceeds the rank), as in chunk_stats._ace."""
    n = ws.shape[0]
    gaps = 0.0
    full = 0
    start = 0  # first sorted position of the current bin
    mass_start = 0.0
    for b in range(bins):
        if b < bins - 1:
            pl = np.searchsorted(cw[1:], lo[b + 1], side="right")
            ph = np.searchsorted(cw[1:], hi[b + 1], side="right")
            x_lo = cs[pl]
            edge = x_lo + frac[b + 1] * (cs[ph] - x_lo)
            stop = np.searchsorted(cs, edge, side="left")  # one past the bin's last sorted position
        else:
            stop = n
        count = cw[stop] - cw[start]
        if count > 0:
            mass_stop = _mass_upto(ws, cs, prefix, stop)
            hits = count - (ce[stop] - ce[start])
            gaps += abs(hits - (mass_stop - mass_start)) / count
            full += 1
            mass_start = mass_stop
        start = stop
    return gaps / full


def _count_draws(raw, has_half, half, n, out, done):
    """Bootstrap counts from raw PCG64 outputs, drawn as numpy's Generator.integers(0, n) draws them:
    each 64-bit output gives two 32-bit values, low half first (a high half left over waits in the
    generator: `has_half`, `half`), each mapped to [0, n) by Lemire's multiply-and-reject. Draw
    `done + i` lands in row (done + i) // n of out [c, n]. Stops when out is full or `raw` is used up
    (rejections, a few per million draws, need more); returns (draws done, has_half, half)."""
    c, width = out.shape
    total = c * width
    mask = np.uint64(0xFFFFFFFF)
    shift = np.uint64(32)
    bound = np.uint64(n)
    threshold = (np.uint64(1 << 32) - bound) % bound
    half = np.uint64(half)
    row, col = done // width, done % width
    counts = out[min(row, c - 1)]
    k = 0
    while done < total:
        if has_half:  # the high half of the previous output first
            v = half
            has_half = False
        elif k < raw.shape[0]:
            word = np.uint64(raw[k])
            k += 1
            v = word & mask
            half = word >> shift
            has_half = True
        else:
            break
        m = v * bound
        if (m & mask) < threshold:
            continue
        counts[np.uint64(m >> shift)] += 1
        done += 1
        col += 1
        if col == width:
            row += 1
            col = 0
            counts = out[min(row, c - 1)]
    return done, has_half, half


if numba is not None:
    def _jit(fn, **options):
        """nogil: the model threads run side by side. The compiled code is cached next to this file (or
        in numba's user cache), so only the first use on a machine compiles (seconds); where nothing
        is writable, each process compiles once."""
        try:
            return numba.njit(nogil=True, cache=True, **options)(fn)
        except RuntimeError:  # pragma: no cover - no cache location
            return numba.njit(nogil=True, **options)(fn)

    _isum = _jit(_isum)
    _dot = _jit(_dot, fastmath={"reassoc", "contract"})
    _gather = _jit(_gather)
    _rank_sums = _jit(_rank_sums, fastmath={"reassoc", "contract"})
    _rank_sums_tied = _jit(_rank_sums_tied)
    _mass_upto = _jit(_mass_upto)
    _ace_row = _jit(_ace_row)
    _block = _jit(_block)
    _count_draws = _jit(_count_draws)

block = _block  # the entry points (compiled where numba imports)
count_draws = _count_draws


def draw_counts(rng: np.random.Generator, n: int, c: int) -> np.ndarray | None:
    """Counts [c, n] (int32) equal to bincounts of rng.integers(0, n, size=(c, n)) rows, leaving rng in
    the same state, in one compiled pass over raw outputs instead of an int64 array and a bincount per
    row (about half the time). None where that equality is not established: without numba, for a bit
    generator other than PCG64, or n outside [2, 2**31)."""
    bits = rng.bit_generator
    if numba is None or type(bits) is not np.random.PCG64 or not 2 <= n < 2**31:
        return None
    state = bits.state
    has_half, half = bool(state["has_uint32"]), np.uint64(state["uinteger"])
    out = np.zeros((c, n), np.int32)
    done = 0
    while done < c * n:
        need = c * n - done - int(has_half)
        raw = bits.random_raw(max(1, (need + 1) // 2))
        done, has_half, half = count_draws(raw, has_half, half, n, out, done)
    state = bits.state
    state["has_uint32"], state["uinteger"] = int(has_half), int(half)
    bits.state = state
    return out
