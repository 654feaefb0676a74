"""The distances between key and query clouds the variants are built on: the discriminator's loss
(fused, gradient by hand), conditional transport, the unbiased MMD² (quadratic, block and linear
estimators, gradient by hand) and the debiased Sinkhorn divergence. Pure functions of tensors; the
two `torch.autograd.Function`s keep only what their gradients need.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from aligneval.align.blocks import Discriminator, full_precision, grouped_rows

DISC_CHUNK_ROWS = 1024  # rows (one head at one token) per layer per chunk: the intermediates stay in cache


def _relu_backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """grad·[x > 0]: ReLU's own backward kernel (a masked_fill or a where on a bool mask is ~10× slower)."""
    return torch.ops.aten.threshold_backward(grad, x, 0.0)


def _disc_rows(params, x, keep, gain, sign: float, want_params: bool, want_input: bool, grads):
    """One chunk of rows x [N, R, d]: Σ_r gain_r·softplus(sign·D(x_r)) per layer [N], the signed
    logits [N, R], and the gradient by hand: added into `grads` (parameters), returned (x).

    D = out(ReLU(hidden(dropout(highway(x))))), highway(x) = x + σ(h)(ReLU(h) − x), h = Wx + b, so
    ∂highway/∂h = σ(1−σ)(ReLU(h) − x) + σ·[h > 0] and ∂highway/∂x = (1 − σ) + (that)·W.
    """
    wh, bh, w1, b1, w2, b2 = params
    h = torch.baddbmm(bh, x, wh)
    s = torch.sigmoid(h)
    diff = F.relu(h).sub_(x)
    y = torch.addcmul(x, s, diff)
    if keep is not None:
        y.mul_(keep)
    z = torch.baddbmm(b1, y, w1)
    a = F.relu(z)
    u = torch.baddbmm(b2, a, w2).squeeze(-1).mul_(sign)
    value = (F.softplus(u) * gain).sum(-1)
    if not (want_params or want_input):
        return value, u, None
    g_logit = torch.sigmoid(u).mul_(gain * sign)[..., None]  # ∂/∂logit, [N, R, 1]
    if want_params:
        grads[5] += g_logit.sum(1, keepdim=True)
        grads[4].baddbmm_(a.transpose(1, 2), g_logit)
    g_z = _relu_backward(torch.bmm(g_logit, w2.transpose(1, 2)), z)
    if want_params:
        grads[3] += g_z.sum(1, keepdim=True)
        grads[2].baddbmm_(y.transpose(1, 2), g_z)
    g_y = torch.bmm(g_z, w1.transpose(1, 2))
    if keep is not None:
        g_y.mul_(keep)
    sg = g_y * s
    g_h = _relu_backward(sg, h).addcmul_(torch.addcmul(sg, sg, s, value=-1.0), diff)
    if want_params:
        grads[1] += g_h.sum(1, keepdim=True)
        grads[0].baddbmm_(x.transpose(1, 2), g_h)
    if not want_input:
        return value, u, None
    # ∂/∂x = g_y·(1 − σ) + g_h·Wᵀ, and g_y·(1 − σ) = g_y − σ·g_y
    return value, u, g_y.sub_(sg).baddbmm_(g_h, wh.transpose(1, 2))


class _DiscLoss(torch.autograd.Function):
    """Σ over parts and valid rows of gain·softplus(sign·D(row)) per layer, with its gradient computed
    chunk by chunk in the forward pass (`_disc_rows`): every intermediate of a chunk is used while it
    is still in cache, and only the input gradients and the parameters' gradients are kept.
    Each x is [N, G, R, d]: G groups per layer (1, or one per head), each with its own stack of the
    discriminator's parameters (N·G stacks), the rows of every group at the same R positions.
    Also returns Σ weight·[sign·D(row) < 0] per layer (rows D assigns to the side `sign` penalizes)."""

    @staticmethod
    def forward(ctx, spec, *tensors):
        parts, dropout, chunk, want_params = spec
        xs, params = tensors[: len(parts)], tensors[len(parts):]
        n, groups, _, d = xs[0].shape
        value, hits = xs[0].new_zeros(n * groups), xs[0].new_zeros(n * groups)
        grads = [torch.zeros_like(p) for p in params] if want_params else None
        chunk = max(1, chunk // groups)  # rows per group: a chunk holds about the same number of vectors
        saved = []
        for x, (weight, index, coeff, sign, want_input) in zip(xs, parts):
            gx = torch.zeros_like(x) if want_input else None
            total = x.shape[2] if index is None else index.numel()
            for start in range(0, total, chunk):
                if index is None:
                    rows = slice(start, start + chunk)
                    xc, wc = x[:, :, rows], weight[rows]
                else:
                    rows = index[start : start + chunk]
                    xc, wc = x.index_select(2, rows), weight.index_select(0, rows)
                xc = xc.reshape(n * groups, -1, d)
                keep = dropout.mask(xc.shape, xc.dtype, xc.device) if dropout is not None else None
                v, u, g = _disc_rows(params, xc, keep, wc * coeff, sign, want_params, want_input, grads)
                value += v
                hits += (wc * (u < 0)).sum(-1)
                if g is not None:
                    g = g.view(n, groups, -1, d)
                    if index is None:
                        gx[:, :, rows] = g
                    else:
                        gx.index_copy_(2, rows, g)
            saved.append(gx)
        ctx.has = [g is not None for g in saved]
        ctx.save_for_backward(*[g for g in saved if g is not None], *(grads or []))
        ctx.want_params, ctx.groups = want_params, groups
        hits = hits.view(n, groups).sum(1)
        ctx.mark_non_differentiable(hits)
        return value.view(n, groups).sum(1), hits

    @staticmethod
    def backward(ctx, grad, _hits):
        saved = list(ctx.saved_tensors)
        inputs = [saved.pop(0) * grad[:, None, None, None] if has else None for has in ctx.has]
        g = grad.repeat_interleave(ctx.groups)[:, None, None]  # each stack feeds its own layer's value
        params = [p * g for p in saved] if ctx.want_params else [None] * 6
        return (None, *inputs, *params)


def sample_rows(weight: torch.Tensor, index: torch.Tensor | None, total: int, limit: int, generator):
    """At most `limit` of a part's `total` valid rows, drawn without replacement from `generator`, with
    their weights scaled by total/limit: an unbiased estimate of the full weighted sum (and of its
    gradient) at limit/total of the cost. Nothing is drawn when every row fits. -> (weight, index)."""
    if not limit or total <= limit:
        return weight, index
    pick = torch.randperm(total, generator=generator, device=weight.device)[:limit].sort().values
    return weight * (total / limit), pick if index is None else index[pick]


def discriminator_loss(disc: Discriminator, parts, chunk: int | None = None, limit: int = 0, generator=None,
                       per_head: bool = False):
    """Per-layer Σ_parts coeff·token_mean(softplus(sign·D(x))) over each part (x [N, B, H, L, d], mask,
    coeff, sign) and Σ_parts token_mean([sign·D(x) < 0]), through `_DiscLoss` (no [N, T, H, d] copy
    of x, no autograd graph over the discriminator). Equal to the plain modules' autograd result,
    except that the dropout masks are drawn chunk by chunk (same rate, same seeded generator).
    `per_head`: D has one stack per (layer, head), N·H, and each head's rows go through its own.
    `limit` > 0 takes the mean on at most that many rows per part and layer (`sample_rows`)."""
    params = (disc.highway.lin.weight, disc.highway.lin.bias, disc.hidden.weight, disc.hidden.bias,
              disc.out.weight, disc.out.bias)
    grad_on = torch.is_grad_enabled()
    xs, meta = [], []
    for x, mask, coeff, sign in parts:
        rows, weight, index = grouped_rows(x, mask, per_head)
        groups = rows.shape[1]
        weight, index = sample_rows(weight, index, rows.shape[2] if index is None else index.numel(),
                                    max(1, limit // groups) if limit else 0, generator)
        rows, off = full_precision(rows, params[0].dtype)
        xs.append(rows)
        meta.append((weight.to(rows.dtype), index, float(coeff), float(sign), grad_on and x.requires_grad))
    want_params = grad_on and any(p.requires_grad for p in params)
    dropout = disc.dropout if disc.dropout.training and disc.dropout.p > 0 else None
    with off:
        return _DiscLoss.apply((meta, dropout, chunk or DISC_CHUNK_ROWS, want_params), *xs, *params)


# ----------------------------------------------------------------------------- conditional transport, MMD², Sinkhorn


def conditional_transport(
    cost: torch.Tensor, scores: torch.Tensor, valid_k: torch.Tensor, valid_q: torch.Tensor, rho: float = 0.5
) -> torch.Tensor:
    """CT = (1−ρ)·mean_j Σ_i C_ij π(k_i|q_j) + ρ·mean_i Σ_j C_ij π(q_j|k_i) per group.

    cost, scores: [G..., n, m] (rows index keys i, columns queries j); valid_k: bool [G..., n];
    valid_q: bool [G..., m]. π(k_i|q_j) is the softmax over valid i of scores[:, j], π(q_j|k_i) the
    softmax over valid j of scores[i, :]. Returns [G...].
    """
    vk = valid_k[..., :, None]
    vq = valid_q[..., None, :]
    low = torch.finfo(scores.dtype).min
    p_k_given_q = torch.softmax(scores.masked_fill(~vk, low), dim=-2)
    p_q_given_k = torch.softmax(scores.masked_fill(~vq, low), dim=-1)
    c = cost.masked_fill(~(vk & vq), 0.0)
    forward = (c * p_k_given_q).sum(-2)  # [G, m]: expected cost of moving each query to keys
    backward = (c * p_q_given_k).sum(-1)  # [G, n]: expected cost of moving each key to queries
    mean_q = (forward * valid_q).sum(-1) / valid_q.sum(-1).clamp_min(1)
    mean_k = (backward * valid_k).sum(-1) / valid_k.sum(-1).clamp_min(1)
    return (1.0 - rho) * mean_q + rho * mean_k


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x_i − y_j||² for [G, n, d] × [G, m, d] -> [G, n, m] (matmul form, clamped at 0)."""
    xx = (x * x).sum(-1)[..., :, None]
    yy = (y * y).sum(-1)[..., None, :]
    return (xx + yy - 2.0 * x @ y.transpose(-1, -2)).clamp_min(0.0)


MMD_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
MMD_BLOCK = 32  # tokens per block of the quadratic estimator; longer inputs are dealt into blocks (0: never); docs/align.md
MEDIAN_SAMPLE = 32  # bandwidth: median over ≤ 32×32 strided valid key–query pairs per example/head
LOG2E = 1.0 / math.log(2.0)
MMD_CHUNK = 24 * 128 * 128  # [L, L] entries per chunk (24 heads at 128 tokens), whole examples; measured best of 12–96 heads


def _lower_median(values: torch.Tensor) -> torch.Tensor:
    """torch.median over the last axis (the lower median); on the CPU through numpy's introselect,
    ~2× faster than torch's for the [G, 1024] sampled distances."""
    if values.device.type != "cpu" or values.requires_grad or values.dtype not in (torch.float32, torch.float64):
        return values.median(dim=-1).values
    k = (values.shape[-1] - 1) // 2
    return torch.from_numpy(np.partition(values.numpy(), k, axis=-1)[..., k].copy())


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, sample: int = MEDIAN_SAMPLE) -> torch.Tensor:
    """Median squared key–query distance per group (detached), [G]; x, y: [G, L, d], valid [G, L].

    Exact (over all valid pairs) when L ≤ `sample`; otherwise estimated from `sample` valid
    positions per group taken at even strides, which keeps the cost independent of L².
    """
    return _group_medians(x[:, None], y[:, None], valid, sample)


def _group_medians(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, sample: int = MEDIAN_SAMPLE) -> torch.Tensor:
    """`median_bandwidth` of the M·H groups of x, y [M, H, L, d] (any memory layout; padding may hold
    garbage) whose H heads share the mask valid [M, L]; [M·H], group (m, h) at m·H + h."""
    with torch.no_grad():
        count, heads, length, dim = x.shape
        n = valid.sum(-1)
        if length <= sample:
            pair = (valid[:, :, None] & valid[:, None, :]).repeat_interleave(heads, 0)
            d = squared_distances(x.reshape(-1, length, dim), y.reshape(-1, length, dim))
            med = torch.nanmedian(torch.where(pair, d, torch.nan).flatten(-2), dim=-1).values
        else:
            # the (i·n // sample)-th valid position of each m, i < sample: the first position whose running
            # count of valid positions exceeds that rank; rows of the [M, L, H] token-major order
            rank = torch.arange(sample, device=x.device)[None, :] * n.clamp_min(1)[:, None] // sample
            picks = torch.searchsorted(valid.cumsum(-1), rank + 1).clamp_max_(length - 1)
            picks = picks + torch.arange(count, device=x.device)[:, None] * length
            rows = (picks[:, None, :] * heads + torch.arange(heads, device=x.device)[None, :, None]).flatten()
            xs = x.transpose(1, 2).reshape(-1, dim).index_select(0, rows).view(-1, sample, dim)  # row copies
            ys = y.transpose(1, 2).reshape(-1, dim).index_select(0, rows).view(-1, sample, dim)
            med = _lower_median(squared_distances(xs, ys).flatten(-2))
        med = torch.where((n > 0).repeat_interleave(heads), med, 0.0)  # an all-padding group: 0, as on zeros
        return torch.nan_to_num(med, nan=1.0).clamp_min(1e-6)


def _augmented_points(x: torch.Tensor, y: torch.Tensor, pad: torch.Tensor, c: torch.Tensor,
                      left: torch.Tensor, right: torch.Tensor) -> None:
    """Fill `left` and `right` ([3g, L, d + 2]) so that one bmm gives the base-2 exponents
    −c·||a_i − b_j||² of the three blocks (a, b) = (x, x), (x, y), (y, y) of g groups:
    left_i = (2c·a_i, −c|a_i|² − pad_i, 1) and right_j = (b_j, 1, −c|b_j|² − pad_j), so
    left_i·right_j = 2c·a_i·b_j − c|a_i|² − c|b_j|² − pad_i − pad_j, written once into an [L, L]
    block instead of a broadcast pass and a baddbmm over it. The constant columns (left[..., d + 1]
    and right[..., d], both 1) are the caller's, set once per buffer. x, y [g, L, d] (padding zeroed);
    pad [g, L] is 0 at a real point and huge at a padded one, so every term a padded point enters is
    exp(−huge) = 0 and no mask is ever applied to an [L, L] block. c: [g, 1].
    right[..., :d + 1] is also (b, 1): the gradient's matmuls get the row sums as a last column.
    """
    g, length, dim = x.shape
    lv, rv = left.view(3, g, length, dim + 2), right.view(3, g, length, dim + 2)
    for i, (a, b) in enumerate(((x, x), (x, y), (y, y))):
        torch.mul(a, 2.0 * c[..., None], out=lv[i, ..., :dim])
        rv[i, ..., :dim].copy_(b)
    norm_x, norm_y = (torch.linalg.vector_norm(t, dim=-1).square_() for t in (x, y))
    for i, (na, nb) in enumerate(((norm_x, norm_x), (norm_x, norm_y), (norm_y, norm_y))):
        torch.addcmul(pad, na, c, out=lv[i, ..., dim]).neg_()
        torch.addcmul(pad, nb, c, out=rv[i, ..., dim + 1]).neg_()


def _kernel_terms(exponent: torch.Tensor, scales: tuple[float, ...], want_slope: bool, spare: torch.Tensor):
    """From E = −d/(s₀·m)·log₂e for the largest scale s₀ (a base-2 exponent: exp2 is ~3× cheaper than
    exp on CPU): (Σ_ij K_ij [G], Σ_i K_ii [G], S′ or None, f) with K = Σ_s exp(−d/(s·m)) and
    S = f·S′ = Σ_s exp(−d/(s·m))/s = −m·∂K/∂d. K is never formed: the value needs only its sums.

    When the scales double (s₀, s₀/2, …) each term is the previous one squared (one exp in all) and
    S′ = Σ_p 2^p·T_p accumulates in place on `exponent` (f = 1/s₀, applied by the caller to the few
    [G, L, d] results instead of an [L, L] pass); `spare` [G, L, L] holds the running power.
    """
    ordered = sorted(scales, reverse=True)
    doubling = all(math.isclose(x, 2 * y) for x, y in zip(ordered, ordered[1:]))
    if doubling:
        acc = exponent.exp2_()  # T_0, then the accumulator of S′
        total = acc.sum((-1, -2))
        diag = acc.diagonal(dim1=-2, dim2=-1).clone()
        kdiag = diag.sum(-1)
        term = None
        for p in range(1, len(ordered)):
            term = torch.mul(acc, acc, out=spare) if term is None else term.mul_(term)
            diag = diag * diag
            total, kdiag = total + term.sum((-1, -2)), kdiag + diag.sum(-1)
            if want_slope:
                acc.add_(term, alpha=float(2**p))
        return total, kdiag, (acc if want_slope else None), 1.0 / ordered[0]
    total = kdiag = slope = None
    for sc in ordered:
        term = torch.exp2(exponent * (ordered[0] / sc))
        part, diag = term.sum((-1, -2)), term.diagonal(dim1=-2, dim2=-1).sum(-1)
        total, kdiag = (part, diag) if total is None else (total + part, kdiag + diag)
        if want_slope:
            slope = torch.div(term, sc, out=spare) if slope is None else slope.add_(term, alpha=1.0 / sc)
    return total, kdiag, slope, 1.0


class _PairedMMD(torch.autograd.Function):
    """Value and analytic gradient of the paired unbiased MMD² of every group (m, s, h) of x, y
    [M, S, H, L, d] (valid [M, S, L] shared by the heads; S blocks of one example), computed chunk by
    chunk, whole examples at a time; the values come in (m, s, h) order, [M·S·H].

    With A_ij = −∂k/∂d = S_ij/m at d_ij = ||a_i − b_j||²:
    ∂/∂a_i Σ_j w_ij k(a_i, b_j) = −2(Σ_j w_ij A_ij a_i − Σ_j w_ij A_ij b_j), w_ij = v_i v_j [i ≠ j].
    Padded entries of every [L, L] block are exactly 0 (`_augmented_points`), so w enters only through the
    diagonal; only [M, H, L, d] gradients are kept, in x's own memory layout, never the [G, L, L]
    blocks autograd would store. Each chunk's points are gathered (padding zeroed) into a small
    contiguous buffer, so x may be a strided view such as the capture's token-major stack, dealt
    into blocks by a view: nothing is copied outside the chunks, and the gradients come back in the
    stack's own layout.
    """

    @staticmethod
    def forward(ctx, x, y, valid, med, scales, chunk):
        count, blocks, heads, length, dim = x.shape
        value = x.new_zeros(count * blocks * heads)
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        gx, gy = (torch.empty_like(x), torch.empty_like(y)) if want else (None, None)  # every chunk writes its own
        huge = torch.finfo(x.dtype).max / 4  # the sum of two stays finite; exp(−huge) is 0 in every dtype
        pad = (~valid).to(x.dtype) * huge
        vf = valid.to(x.dtype)
        s0 = max(scales)
        per = max(1, min(chunk // (blocks * heads * length * length), count))  # whole examples per chunk
        own_heads, heads = heads, blocks * heads  # the groups of an example: its blocks' heads, (s, h) order
        chunk_shape = (-1, blocks, own_heads, length, dim)
        # the three blocks xx, xy, yy of a chunk's g groups run as one batch of 3g; xx and yy enter the
        # value with +1, the two equal cross sums with −2; the gradient's −2·sign/m counts a symmetric
        # block twice (its points are on both sides)
        sign = x.new_tensor([1.0, -2.0, 1.0])[:, None]
        factor = x.new_tensor([2.0, -2.0, 2.0])[:, None]
        left = x.new_empty(3 * per * heads, length, dim + 2)  # reused: no fresh pages per chunk
        right = torch.empty_like(left)
        left[..., dim + 1], right[..., dim] = 1.0, 1.0  # `_augmented_points`' constant columns
        points = x.new_empty(2, per * heads, length, dim)  # this chunk's x, y, padding zeroed
        work = x.new_empty(2, 3 * per * heads, length, length)
        zero = x.new_zeros(())
        padded = not bool(valid.all())
        # every per-group scalar once, outside the loop: each chunk only slices them
        pad_g = pad.reshape(-1, length).repeat_interleave(own_heads, 0)  # [G, L]
        n_g = vf.reshape(-1, length).sum(-1).repeat_interleave(own_heads)
        norm_g = 1.0 / (n_g * (n_g - 1)).clamp_min(1.0)
        c_g = (LOG2E / s0 / med)[:, None]  # [G, 1]
        keep_g = valid.reshape(-1, length).repeat_interleave(own_heads, 0)[..., None] if padded else None
        for start in range(0, count, per):
            sl = slice(start, start + per)
            g = x[sl].shape[0] * heads
            groups = slice(start * heads, start * heads + g)
            xs, ys = points[0, :g], points[1, :g]
            xs.view(chunk_shape).copy_(x[sl])  # a strided copy is fast; a strided where is not
            ys.view(chunk_shape).copy_(y[sl])
            if padded:  # padding may hold anything (NaN): replaced, not multiplied
                torch.where(keep_g[groups], xs, zero, out=xs)
                torch.where(keep_g[groups], ys, zero, out=ys)
            lhs, rhs = left[: 3 * g], right[: 3 * g]
            _augmented_points(xs, ys, pad_g[groups], c_g[groups], lhs, rhs)
            exponent = torch.bmm(lhs, rhs.transpose(-1, -2), out=work[0, : 3 * g])
            total, kdiag, slope, f = _kernel_terms(exponent, scales, want, work[1, : 3 * g])
            m, norm = med[groups], norm_g[groups]
            value[groups] = (sign * (total - kdiag).view(3, g)).sum(0) * norm
            if not want:
                continue
            # w_ij = [i ≠ j]: the diagonal leaves the slope (for xx and yy its terms cancel anyway, for xy
            # it is the excluded pair (x_i, y_i)); then every product below sums over j ≠ i only
            slope.diagonal(dim1=-2, dim2=-1).zero_()
            b = rhs[..., : dim + 1]  # (b_j, 1): S @ b also gives S's row sums
            scale = (-2.0 * f * norm / m * factor).view(-1, 1, 1)
            sb = torch.bmm(slope, b)  # [Σ_j S_ij b_j, Σ_j S_ij]
            # step = scale·(rows·a − pulled), a = x, x, y by block: two passes, in place
            step = sb[..., :dim].mul_(-scale).view(3, g, length, dim)
            rows = (sb[..., dim:] * scale).view(3, g, length, 1)
            step[:2].addcmul_(rows[:2], xs)
            step[2].addcmul_(rows[2], ys)
            torch.add(step[0].view(chunk_shape), step[1].view(chunk_shape), out=gx[sl])
            st = torch.bmm(slope[g : 2 * g].transpose(-1, -2), right[:g, :, : dim + 1])  # [Σ_i S_ij x_i, Σ_i S_ij]
            scale_xy = scale[g : 2 * g]
            pushed = st[..., :dim].mul_(-scale_xy).addcmul_(st[..., dim:] * scale_xy, ys)
            torch.add(pushed.view(chunk_shape), step[2].view(chunk_shape), out=gy[sl])
        ctx.save_for_backward(gx, gy)
        return value

    @staticmethod
    def backward(ctx, grad):
        gx, gy = ctx.saved_tensors
        g = grad.view(*gx.shape[:3], 1, 1)
        return g * gx, g * gy, None, None, None, None  # not in place: a retained graph may run backward again


def mmd2_unbiased(
    x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, scales: tuple[float, ...] = MMD_SCALES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased squared MMD between paired clouds x_i, y_i (the key and query of token i).

    x, y: [G, L, d]; valid: bool [G, L]. Kernel: Σ_s exp(−||a−b||² / (s·m)), m = median squared
    key–query distance (`median_bandwidth`, detached). The U-statistic of Gretton et al. (2012,
    Lemma 6) with n = m: all three sums skip i = j, because k_i and q_i come from the same token and
    are not independent. Returns (value [G], usable [G]) where usable needs ≥ 2 valid tokens.
    Padded points may hold anything: they are never computed on.
    """
    return mmd2_groups(x[:, None], y[:, None], valid, scales)


def mmd2_groups(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, scales: tuple[float, ...],
                 block: int = 0):
    """`mmd2_unbiased` of the M·H groups of x, y [M, H, L, d] whose heads share valid [M, L].

    With 0 < block < L, the block U-statistic (Zaremba, Gretton & Blaschko, NeurIPS 2013): the L
    positions are cut into B = ceil(L / block) consecutive blocks of equal size, the U-statistic is
    taken within each block, and the blocks are averaged weighted by their pair counts n_b(n_b − 1).
    Each block is unbiased, so the average is; the cost is O(L·block) instead of O(L²). Consecutive
    blocks keep a short example of a long (padded) batch whole in its first block, so it loses no
    pair; the bandwidth is still the whole example's.
    """
    (x, off), (y, _) = full_precision(x), full_precision(y)
    scales = tuple(float(s) for s in scales)
    usable = (valid.sum(-1) >= 2).repeat_interleave(x.shape[1])
    with off:
        med = _group_medians(x, y, valid)
        count, heads, length, dim = x.shape
        blocks = -(-length // block) if 0 < block < length else 1
        if blocks == 1:
            return _PairedMMD.apply(x[:, None], y[:, None], valid[:, None], med, scales, MMD_CHUNK), usable
        size = -(-length // blocks)  # tokens per block, ≤ block
        extra = blocks * size - length
        if extra:  # a few zero positions make L a multiple of the block count (padding: never computed on)
            x, y = (torch.cat([t, t.new_zeros(count, heads, extra, dim)], dim=2) for t in (x, y))
            valid = torch.cat([valid, valid.new_zeros(count, extra)], dim=1)
        # block s holds tokens s·size … (s + 1)·size − 1: views, no copy ([M, B, H, size, d] and [M, B, size])
        xb, yb = (t.view(count, heads, blocks, size, dim).transpose(1, 2) for t in (x, y))
        dealt = valid.view(count, blocks, size)
        med_b = med.view(count, 1, heads).expand(count, blocks, heads).reshape(-1)
        per_block = _PairedMMD.apply(xb, yb, dealt, med_b, scales, MMD_CHUNK).view(count, blocks, heads)
        n = dealt.sum(-1).to(per_block.dtype).view(count, blocks, 1)
        pairs = n * (n - 1)
        value = (per_block * pairs).sum(1) / pairs.sum(1).clamp_min(1.0)
    return value.reshape(-1), usable


def mmd2_linear_groups(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, scales: tuple[float, ...]):
    """The linear-time MMD² of Gretton et al. (2012, Lemma 14) for the M·H groups of x, y [M, H, L, d]
    whose heads share valid [M, L]: the valid tokens taken in order, in disjoint pairs (z₁, z₂),
    (z₃, z₄), … (an odd last one is left out), averaging h = k(x, x′) + k(y, y′) − k(x, y′) − k(x′, y)
    over the pairs. Unbiased like the quadratic estimator, O(L) instead of O(L²), with a larger
    variance. Same kernel and bandwidth as `mmd2_unbiased`; plain autograd. Returns (value, usable)."""
    (x, off), (y, _) = full_precision(x), full_precision(y)
    with off:
        count, heads, length, dim = x.shape
        med = _group_medians(x, y, valid).view(count, heads, 1)
        n = valid.sum(-1)
        pairs = max(1, length // 2)
        first = torch.arange(pairs, device=x.device) * 2  # ranks 2j and 2j + 1 among the valid tokens
        running = valid.cumsum(-1)
        ok = (first + 2)[None, :] <= n[:, None]  # [M, P]: both tokens of pair j exist
        keep = ok[:, None, :, None]
        zero = x.new_zeros(())
        # valid tokens first in every row (right padding, or none): the rank-r token is at position r,
        # and the pairs are two strided views; otherwise each rank's position is looked up
        prefix = bool((running == torch.arange(1, length + 1, device=x.device).clamp_max(n[:, None])).all())
        complete = bool(ok.all())

        def take(t, rank):  # the rank-th valid token of every group, zero where the pair is incomplete
            if prefix:
                picked = t[:, :, rank[0] : rank[0] + 2 * pairs : 2]
            else:
                pos = torch.searchsorted(running, (rank + 1)[None, :].expand(count, -1).contiguous()).clamp_max_(length - 1)
                picked = t.gather(2, pos[:, None, :, None].expand(-1, heads, -1, dim))
            return picked if complete else torch.where(keep, picked, zero)

        x1, x2, y1, y2 = take(x, first), take(x, first + 1), take(y, first), take(y, first + 1)

        def kernel(a, b):
            d = (a - b).square().sum(-1)
            return sum(torch.exp(-d / (s * med)) for s in scales)

        h = kernel(x1, x2) + kernel(y1, y2) - kernel(x1, y2) - kernel(x2, y1)  # [M, H, P]
        okf = ok[:, None, :].to(h.dtype)
        value = (h * okf).sum(-1) / okf.sum(-1).clamp_min(1.0)
    return value.flatten(), (n >= 2).repeat_interleave(heads)


def _softmin(eps: torch.Tensor, cost: torch.Tensor, logw_h: torch.Tensor) -> torch.Tensor:
    """−ε·log Σ_j exp(logw_h_j − C_ij/ε) over the last axis: the log-domain Sinkhorn update.

    eps is [G, 1, 1] (it broadcasts against the cost); the result is [G, n].
    """
    return -eps[..., 0] * torch.logsumexp(logw_h[..., None, :] - cost / eps, dim=-1)


def entropic_ot(
    x: torch.Tensor, y: torch.Tensor, loga: torch.Tensor, logb: torch.Tensor, eps: torch.Tensor,
    iters: int, tol: float = 1e-6,
) -> torch.Tensor:
    """Entropic OT_ε(α, β) = ⟨α, f⟩ + ⟨β, g⟩ at the Sinkhorn fixed point, squared Euclidean cost.

    x [G, n, d], y [G, m, d]; loga [G, n], logb [G, m] log-weights (−inf on padding); eps [G, 1, 1].
    The potentials are iterated without autograd; one last update with the cost attached gives
    the envelope-theorem gradient (each point only through its own potential, as geomloss does).
    """
    e = eps[..., 0]  # [G, 1]
    with torch.no_grad():
        c = squared_distances(x, y)
        f = torch.zeros_like(loga)
        g = torch.zeros_like(logb)
        for i in range(iters):
            f_new = _softmin(eps, c, logb + g / e)
            g = _softmin(eps, c.transpose(-1, -2), loga + f_new / e)
            done = i % 10 == 9 and bool(((f_new - f).abs() / e).nan_to_num(0.0).max() < tol)
            f = f_new
            if done:
                break
    f = _softmin(eps, squared_distances(x, y.detach()), logb + g / e)
    g = _softmin(eps, squared_distances(y, x.detach()), loga + f.detach() / e)
    a, b = loga.exp(), logb.exp()
    f = torch.where(a > 0, f, torch.zeros_like(f))
    g = torch.where(b > 0, g, torch.zeros_like(g))
    return (a * f).sum(-1) + (b * g).sum(-1)


def sinkhorn_divergence(
    x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, eps: float | torch.Tensor, iters: int = 100
) -> torch.Tensor:
    """Debiased S_ε = OT_ε(α,β) − ½OT_ε(α,α) − ½OT_ε(β,β) between uniform clouds on valid points.

    x, y: [G, L, d]; valid: bool [G, L]; eps a float or [G] tensor. Returns [G].
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x, y = torch.where(valid[..., None], x, zero), torch.where(valid[..., None], y, zero)
    n = valid.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    logw = torch.where(valid, -torch.log(n), torch.full_like(n, -math.inf))
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None, None]
    xy = entropic_ot(x, y, logw, logw, eps_t, iters)
    xx = entropic_ot(x, x, logw, logw, eps_t, iters)
    yy = entropic_ot(y, y, logw, logw, eps_t, iters)
    return xy - 0.5 * (xx + yy)
