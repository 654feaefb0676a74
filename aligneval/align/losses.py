"""The alignment regularizers: distances between each head's key and query distributions.

Every variant is an `Aligner` module: `aligner(k, q, mask) -> Tensor[N]`, one value per layer, where
k and q are the stacked per-head keys and queries of N layers, [N, B, H, L, d_h], and mask is the
attention mask [B, L] (1 = real token). Each value is already the mean over examples and heads, so
the training objective is `task_loss + λ · aligner(k, q, mask).mean()` (METHOD.md).

Padding is masked everywhere (a deliberate change from the authors' code): padded positions are
replaced by zeros before any computation and weighted out of every mean, so garbage in the padding
changes neither the value nor the gradient.

The auxiliary networks (discriminator, critic, navigator) have one set of parameters per layer,
shared by that layer's heads, stored stacked ([N, ...]) so all layers run in one batched matmul.

The min-max games are played by two optimizers (aligneval/align/train.py): `aux_loss` on detached
keys and queries is what the auxiliary networks descend (gradient reversal inside the graph gives
each of them its direction: the discriminator lowers its log-loss, the critic raises the transport
cost), with their own learning rate and update count; `encoder_loss` is what the attention
projections descend, with the auxiliary networks held fixed. `forward` is the game's value.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from aligneval.errors import UsageError
from aligneval.registry import Registry

AUX_WIDTH = 16


# ----------------------------------------------------------------------------- building blocks


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.neg()


def grad_reverse(x: torch.Tensor) -> torch.Tensor:
    """Identity forward, gradient × −1 backward: what lies behind it climbs the loss."""
    return _GradReverse.apply(x)


def adversarial(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply an auxiliary net as the *maximizing* player: GR(fn(GR(x))).

    The net's parameters see the reversed gradient (they maximize the loss) while x sees the
    reversal twice, i.e. the plain gradient (the attention projections minimize it).
    """
    return grad_reverse(fn(grad_reverse(x)))


class StackedLinear(nn.Module):
    """N independent Linear layers (one per attention layer) applied as one batched matmul.

    Input [N, ..., in] -> [N, ..., out]. Initialized like `nn.Linear` (uniform ±1/sqrt(in)).
    """

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*shape[:-1], out.shape[-1])

    def layer(self, i: int) -> nn.Linear:
        """Layer i as a plain nn.Linear (for independent reference computations in tests)."""
        lin = nn.Linear(self.weight.shape[1], self.weight.shape[2]).to(self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight[i].T)
            lin.bias.copy_(self.bias[i, 0])
        return lin


class Highway(nn.Module):
    """highway(x) = σ(Wx+b)·ReLU(Wx+b) + (1−σ(Wx+b))·x, as in the authors' discriminator."""

    def __init__(self, n: int, d: int):
        super().__init__()
        self.lin = StackedLinear(n, d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return x + torch.sigmoid(h) * (F.relu(h) - x)  # = σ·ReLU(h) + (1−σ)·x with fewer passes


class SeededDropout(nn.Module):
    """Dropout that draws from its own generator, so the auxiliary nets never consume the global
    RNG: the backbone's dropout masks stay identical to the baseline twin's.

    `seed(s)` makes the generator on the device of the first input it sees (a CUDA tensor needs a
    CUDA generator); `generator` may also be set directly.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None
        self._seed: int | None = None

    def seed(self, seed: int | None) -> None:
        self._seed, self.generator = seed, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self._seed is not None and (self.generator is None or self.generator.device != x.device):
            self.generator = torch.Generator(device=x.device).manual_seed(self._seed)
        keep = torch.rand(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return x * keep.ge_(self.p).mul_(1.0 / (1.0 - self.p))  # in place: rand is the cheapest draw


class Discriminator(nn.Module):
    """D(x) = Linear(16→1)(ReLU(Linear(d_h→16)(dropout(highway(x))))) -> logits [N, ...]."""

    def __init__(self, n: int, d: int, width: int = AUX_WIDTH, dropout: float = 0.1):
        super().__init__()
        self.highway = Highway(n, d)
        self.dropout = SeededDropout(dropout)
        self.hidden = StackedLinear(n, d, width)
        self.out = StackedLinear(n, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(self.dropout(self.highway(x))))).squeeze(-1)


class Critic(nn.Module):
    """τ(x) = normalize(Linear(16→16)(ReLU(Linear(d_h→16)(highway(x))))): unit feature vectors."""

    def __init__(self, n: int, d: int, width: int = AUX_WIDTH):
        super().__init__()
        self.highway = Highway(n, d)
        self.hidden = StackedLinear(n, d, width)
        self.out = StackedLinear(n, width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(F.relu(self.hidden(self.highway(x)))), dim=-1, eps=1e-6)


class Navigator(nn.Module):
    """φ(x) = normalize(Linear(16→16)(ReLU(Linear(d_h→16)(x)))): scores for the transport plans."""

    def __init__(self, n: int, d: int, width: int = AUX_WIDTH):
        super().__init__()
        self.hidden = StackedLinear(n, d, width)
        self.out = StackedLinear(n, width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(F.relu(self.hidden(x))), dim=-1, eps=1e-6)


# ----------------------------------------------------------------------------- masking helpers


def token_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] attention mask -> bool [1, B, 1, L] that broadcasts against [N, B, H, L]."""
    return mask.bool()[None, :, None, :]


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace padded positions of [N, B, H, L, d] by 0 (torch.where also blocks NaN garbage)."""
    return torch.where(token_mask(mask)[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))


def token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, B, H, L] per-token values -> [N]: mean over each example's valid tokens, then over B, H."""
    valid = token_mask(mask).expand_as(values)
    summed = torch.where(valid, values, torch.zeros_like(values)).sum(-1)
    per_example_head = summed / valid.sum(-1).clamp_min(1)
    return per_example_head.flatten(1).mean(1)


def valid_tokens(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, B, H, L, d] -> ([N, T, H, d] for the T valid tokens of the batch, weights [T] = 1/n_b).

    Gathering the valid tokens skips padding entirely (no compute, exactly zero gradient there);
    the weights turn a sum over tokens into each example's mean over its own tokens.
    """
    valid = mask.bool()
    counts = valid.sum(-1, keepdim=True).clamp_min(1).to(x.dtype).expand_as(valid)
    return x.transpose(2, 3)[:, valid], (1.0 / counts)[valid]


def weighted_token_mean(values: torch.Tensor, weights: torch.Tensor, batch: int) -> torch.Tensor:
    """[N, T, H] or [N, T] per-token values -> [N]: per-example token means averaged over B (and H)."""
    per_token = values.mean(-1) if values.dim() == 3 else values
    return (per_token * weights).sum(-1) / batch


# ----------------------------------------------------------------------------- pure divergences


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
MEDIAN_SAMPLE = 32  # bandwidth: median over ≤ 32×32 strided valid key–query pairs per example/head
MMD_CHUNK = 32  # groups per chunk: keeps each [chunk, L, L] block cache-resident


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, sample: int = MEDIAN_SAMPLE) -> torch.Tensor:
    """Median squared key–query distance per group (detached), [G].

    Exact (over all valid pairs) when L ≤ `sample`; otherwise estimated from `sample` valid
    positions per group taken at even strides, which keeps the cost independent of L².
    """
    with torch.no_grad():
        length = x.shape[-2]
        if length <= sample:
            pair = valid[..., :, None] & valid[..., None, :]
            d = torch.where(pair, squared_distances(x, y), torch.nan)
            med = torch.nanmedian(d.flatten(-2), dim=-1).values
        else:
            order = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)  # valid positions first
            n = valid.sum(-1, keepdim=True).clamp_min(1)
            picks = order.gather(-1, torch.arange(sample, device=x.device)[None, :] * n // sample)
            index = picks[..., None].expand(-1, -1, x.shape[-1])
            d = squared_distances(x.gather(-2, index), y.gather(-2, index))
            med = d.flatten(-2).median(dim=-1).values
        return torch.nan_to_num(med, nan=1.0).clamp_min(1e-6)


def _kernel_and_slope(a: torch.Tensor, b: torch.Tensor, med: torch.Tensor, scales: tuple[float, ...]):
    """K_ij = Σ_s exp(−d_ij/(s·m)) and S_ij = Σ_s exp(−d_ij/(s·m))/s for d_ij = ||a_i − b_j||².

    The largest-bandwidth term comes straight out of one baddbmm (−d/(s·m) = 2a·b/(s·m) −
    (|a|²+|b|²)/(s·m)) and one in-place exp; when the scales double (0.25, 0.5, …, 4) every other
    term is the previous one squared. In-place updates keep the passes over [G, L, L] few.
    """
    ordered = sorted(scales, reverse=True)
    doubling = all(math.isclose(x, 2 * y) for x, y in zip(ordered, ordered[1:]))
    m = med[:, None, None]
    kernel = slope = term = None
    for i, sc in enumerate(ordered):
        if i == 0 or not doubling:
            c = 1.0 / (sc * m)
            na, nb = (a * a).sum(-1), (b * b).sum(-1)
            base = (na[:, :, None] + nb[:, None, :]).mul_(-c)
            term = torch.baddbmm(base, a * (2.0 * c), b.transpose(-1, -2)).exp_()
        else:
            term = term * term
        if kernel is None:
            kernel, slope = term.clone(), term / sc
        else:
            kernel.add_(term)
            slope.add_(term, alpha=1.0 / sc)
    return kernel, slope


class _PairedMMD(torch.autograd.Function):
    """Value and analytic gradient of the paired unbiased MMD², computed chunk by chunk.

    With A_ij = −∂k/∂d = S_ij/m at d_ij = ||a_i − b_j||²:
    ∂/∂a_i Σ_j w_ij k(a_i, b_j) = −2(Σ_j w_ij A_ij a_i − Σ_j w_ij A_ij b_j).
    Only [G, L, d] gradients are kept, never the [G, L, L] intermediates autograd would store.
    """

    @staticmethod
    def forward(ctx, x, y, valid, med, scales, chunk):
        value = x.new_zeros(x.shape[0])
        gx, gy = torch.zeros_like(x), torch.zeros_like(y)
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        vf = valid.to(x.dtype)
        for start in range(0, x.shape[0], chunk):
            sl = slice(start, start + chunk)
            xs, ys, v, m = x[sl], y[sl], vf[sl], med[sl]
            n = v.sum(-1)
            norm = 1.0 / (n * (n - 1)).clamp_min(1.0)
            # Masks enter through v (padded points are already 0): Σ_j w_ij M_ij c_j with
            # w_ij = v_i v_j [i ≠ j] is v_i ((M @ (v c))_i − M_ii c_i), so no [L, L] mask is built.
            # (a, b, sign): xx and yy enter with +1; the two equal cross sums with −2.
            for a, b, sign, ga, gb in ((xs, xs, 1.0, gx, None), (ys, ys, 1.0, gy, None), (xs, ys, -2.0, gx, gy)):
                kernel, slope = _kernel_and_slope(a, b, m, scales)
                kv = (kernel @ v[..., None])[..., 0] - kernel.diagonal(dim1=-2, dim2=-1)
                value[sl] += sign * norm * (v * kv).sum(-1)
                if not want:
                    continue
                scale = (-2.0 * sign * norm)[:, None, None] / m[:, None, None]
                diag = slope.diagonal(dim1=-2, dim2=-1)[..., None]
                prod = slope @ torch.cat([b, v[..., None]], dim=-1)
                rows = (prod[..., -1:] - diag) * v[..., None]
                pulled = (prod[..., :-1] - diag * b) * v[..., None]
                if gb is None:  # symmetric block: a appears on both sides, the two halves are equal
                    ga[sl] += 2.0 * scale * (rows * a - pulled)
                    continue
                ga[sl] += scale * (rows * a - pulled)
                prod = slope.transpose(-1, -2) @ torch.cat([a, v[..., None]], dim=-1)
                cols = (prod[..., -1:] - diag) * v[..., None]
                pushed = (prod[..., :-1] - diag * a) * v[..., None]
                gb[sl] += scale * (cols * b - pushed)
        ctx.save_for_backward(gx, gy)
        return value

    @staticmethod
    def backward(ctx, grad):
        gx, gy = ctx.saved_tensors
        g = grad[:, None, None]
        return g * gx, g * gy, None, None, None, None


def mmd2_unbiased(
    x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, scales: tuple[float, ...] = MMD_SCALES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased squared MMD between paired clouds x_i, y_i (the key and query of token i).

    x, y: [G, L, d]; valid: bool [G, L]. Kernel: Σ_s exp(−||a−b||² / (s·m)), m = median squared
    key–query distance (`median_bandwidth`, detached). The U-statistic of Gretton et al. (2012,
    Lemma 6) with n = m: all three sums skip i = j, because k_i and q_i come from the same token and
    are not independent. Returns (value [G], usable [G]) where usable needs ≥ 2 valid tokens.
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x, y = torch.where(valid[..., None], x, zero), torch.where(valid[..., None], y, zero)
    med = median_bandwidth(x, y, valid)
    value = _PairedMMD.apply(x, y, valid, med, tuple(float(s) for s in scales), MMD_CHUNK)
    return value, valid.sum(-1) >= 2


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


# ----------------------------------------------------------------------------- the variants


class Aligner(nn.Module):
    """Base: forward(k, q, mask) -> the game's value per layer [N].

    `encoder_loss` is what the attention projections minimize (λ scales it, nothing else);
    `aux_loss` (adversarial variants only) is what the auxiliary networks' own optimizer descends,
    on detached inputs, with a per-layer diagnostic of how well they play (`diagnostic` names it).
    """

    adversarial = False  # True when auxiliary networks play a min-max game against the projections
    diagnostic = "distance"  # the per-layer number the training log records for this variant

    def encoder_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self(k, q, mask)

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss [N] the auxiliary networks descend, diagnostic [N]) on detached k, q."""
        raise NotImplementedError(f"{type(self).__name__} has no auxiliary networks")

    def seed(self, seed: int | None) -> None:
        """Seed every SeededDropout (each gets its own stream, made on its input's device)."""
        drops = [m for m in self.modules() if isinstance(m, SeededDropout)]
        for i, module in enumerate(drops):
            module.seed(None if seed is None else seed + i)

    def set_generator(self, generator: torch.Generator | None) -> None:
        for module in self.modules():
            if isinstance(module, SeededDropout):
                module.generator = generator


GENERATOR_FORMS = ("non-saturating", "saturating")


class GanAligner(Aligner):
    """gan: D_l = BCE(D(GR(k)), 1) + BCE(D(stopgrad(q)), 0), per valid token, mean over tokens/heads.

    D learns to tell keys (1) from queries (0). The key projection plays the generator:
    `generator="non-saturating"` (default, GAN practice) minimizes BCE(D(k), 0), "look like a query",
    whose gradient fades once keys are taken for queries; "saturating" maximizes D's log-loss on the
    keys (the authors' gradient reversal), whose gradient never fades, so keys run to wherever D's
    logit is lowest, past the queries (measured: K–Q MMD 2.05× the baseline's at λ = 1).
    """

    adversarial = True
    diagnostic = "disc_accuracy"

    def __init__(self, n_layers: int, d_head: int, width: int = AUX_WIDTH, dropout: float = 0.1,
                 generator: str = "non-saturating"):
        super().__init__()
        if generator not in GENERATOR_FORMS:
            raise UsageError(f"gan generator must be one of {', '.join(GENERATOR_FORMS)}, not '{generator}'")
        self.disc = Discriminator(n_layers, d_head, width, dropout)
        self.generator_form = generator

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kt, weights = valid_tokens(k, mask)  # padding is never computed on
        qt, _ = valid_tokens(q, mask)
        logits = self.disc(torch.cat([grad_reverse(kt), qt.detach()], dim=1))  # one pass for both
        real, fake = logits.split(kt.shape[1], dim=1)
        per_token = F.softplus(-real) + F.softplus(fake)  # BCE with targets 1 (keys), 0 (queries)
        return weighted_token_mean(per_token, weights, mask.shape[0])

    def encoder_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kt, weights = valid_tokens(k, mask)
        logits = self.disc(kt)
        if self.generator_form == "non-saturating":
            per_token = F.softplus(logits)  # BCE(D(k), 0): keys should be taken for queries
        else:
            per_token = -F.softplus(-logits)  # −BCE(D(k), 1): raise D's log-loss on the keys
        return weighted_token_mean(per_token, weights, mask.shape[0])

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kt, weights = valid_tokens(k.detach(), mask)
        qt, _ = valid_tokens(q.detach(), mask)
        logits = self.disc(torch.cat([kt, qt], dim=1))
        real, fake = logits.split(kt.shape[1], dim=1)
        per_token = F.softplus(-real) + F.softplus(fake)
        with torch.no_grad():  # K-vs-Q accuracy: keys called keys and queries called queries
            hits = ((real > 0).to(real.dtype) + (fake < 0).to(fake.dtype)) / 2
            accuracy = weighted_token_mean(hits, weights, mask.shape[0])
        return weighted_token_mean(per_token, weights, mask.shape[0]), accuracy


NAVIGATOR_RULES = ("ct", "adversarial")


class CTAligner(Aligner):
    """ct / ct-heads: conditional transport with an adversarial critic τ and a navigator φ.

    axis="tokens" matches each head's L keys against its L queries (C is [N, B, H, L, L]);
    axis="heads" matches the H keys against the H queries at each token (C is [N, B, L, H, H]),
    the released code's active branch. The critic maximizes CT (behind gradient reversal); the
    navigator minimizes it with the projections (navigator="ct", the CT paper's rule) or maximizes
    it with the critic (navigator="adversarial", the authors' alignment code).
    """

    adversarial = True
    diagnostic = "critic_value"

    def __init__(
        self, n_layers: int, d_head: int, width: int = AUX_WIDTH, rho: float = 0.5,
        axis: str = "tokens", navigator: str = "ct",
    ):
        super().__init__()
        if axis not in ("tokens", "heads"):
            raise UsageError(f"ct axis must be 'tokens' or 'heads', not '{axis}'")
        if navigator not in NAVIGATOR_RULES:
            raise UsageError(f"navigator must be one of {', '.join(NAVIGATOR_RULES)}, not '{navigator}'")
        if not 0.0 <= rho <= 1.0:
            raise UsageError(f"rho must lie in [0, 1], not {rho}")
        self.critic = Critic(n_layers, d_head, width)
        self.navigator = Navigator(n_layers, d_head, width)
        self.rho, self.axis, self.navigator_rule = rho, axis, navigator

    def features(self, k: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tk, tq = adversarial(self.critic, k), adversarial(self.critic, q)
        if self.navigator_rule == "ct":
            pk, pq = self.navigator(k), self.navigator(q)
        else:
            pk, pq = adversarial(self.navigator, k), adversarial(self.navigator, q)
        return tk, tq, pk, pq

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The reversal layers around the critic (and, by the rule, the navigator) make descending this
        # value each player's move: the critic climbs CT, the CT-paper navigator descends it.
        value = self(k.detach(), q.detach(), mask)
        return value, value.detach()

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.axis == "tokens":
            k, q = zero_padding(k, mask), zero_padding(q, mask)
            tk, tq, pk, pq = self.features(k, q)
            valid = token_mask(mask)  # [1, B, 1, L]
            cost = 1.0 - tk @ tq.transpose(-1, -2)  # [N, B, H, L, L]
            scores = pk @ pq.transpose(-1, -2)
            v = valid.expand(*cost.shape[:-1])
            ct = conditional_transport(cost, scores, v, v, self.rho)  # [N, B, H]
            return ct.flatten(1).mean(1)
        return self._across_heads(k, q, mask)

    def _across_heads(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kt, weights = valid_tokens(k, mask)  # [N, T, H, d]
        qt, _ = valid_tokens(q, mask)
        tk, tq, pk, pq = self.features(kt, qt)
        cost = 1.0 - tk @ tq.transpose(-1, -2)  # [N, T, H, H]
        scores = pk @ pq.transpose(-1, -2)
        heads = torch.ones(cost.shape[:-1], dtype=torch.bool, device=cost.device)
        ct = conditional_transport(cost, scores, heads, heads, self.rho)  # [N, T]
        return weighted_token_mean(ct, weights, mask.shape[0])


class CombineAligner(Aligner):
    """combine: ct (within heads) + ct-heads (across heads), each with its own critic and navigator."""

    adversarial = True
    diagnostic = "critic_value"

    def __init__(self, n_layers: int, d_head: int, width: int = AUX_WIDTH, rho: float = 0.5, navigator: str = "ct"):
        super().__init__()
        self.tokens = CTAligner(n_layers, d_head, width, rho, "tokens", navigator)
        self.heads = CTAligner(n_layers, d_head, width, rho, "heads", navigator)

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (a, da), (b, db) = self.tokens.aux_loss(k, q, mask), self.heads.aux_loss(k, q, mask)
        return a + b, da + db

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.tokens(k, q, mask) + self.heads(k, q, mask)


def _per_example_head(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, B, H, L, d] -> ([N·B·H, L, d], valid [N·B·H, L])."""
    n, b, h, length, d = x.shape
    valid = token_mask(mask).expand(n, b, h, length).reshape(-1, length)
    return x.reshape(-1, length, d), valid


class MMDAligner(Aligner):
    """mmd: unbiased squared MMD between each head's keys and queries (no parameters)."""

    diagnostic = "mmd2"

    def __init__(self, n_layers: int, d_head: int, scales: tuple[float, ...] = MMD_SCALES):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, valid = _per_example_head(k, mask)  # mmd2_unbiased zeroes the padding itself
        y, _ = _per_example_head(q, mask)
        value, usable = mmd2_unbiased(x, y, valid, self.scales)
        value, usable = value.view(k.shape[0], -1), usable.view(k.shape[0], -1).to(k.dtype)
        return (value * usable).sum(1) / usable.sum(1).clamp_min(1.0)


class SinkhornAligner(Aligner):
    """sinkhorn: debiased entropic OT between each head's keys and queries (no parameters).

    ε = eps × the mean squared key–query distance of that example and head (detached) when
    `relative` (the default, so one ε suits any model's scale), else eps as given.
    """

    diagnostic = "sinkhorn"

    def __init__(self, n_layers: int, d_head: int, eps: float = 0.1, iters: int = 50, relative: bool = True):
        super().__init__()
        if eps <= 0:
            raise UsageError(f"sinkhorn eps must be positive, not {eps}")
        self.eps, self.iters, self.relative = float(eps), int(iters), bool(relative)

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k, q = zero_padding(k, mask), zero_padding(q, mask)
        x, valid = _per_example_head(k, mask)
        y, _ = _per_example_head(q, mask)
        eps: float | torch.Tensor = self.eps
        if self.relative:
            with torch.no_grad():
                pair = valid[:, :, None] & valid[:, None, :]
                d = torch.where(pair, squared_distances(x, y), torch.zeros((), dtype=x.dtype))
                eps = self.eps * (d.sum((-1, -2)) / pair.sum((-1, -2)).clamp_min(1)).clamp_min(1e-6)
        value = sinkhorn_divergence(x, y, valid, eps, self.iters)
        return value.view(k.shape[0], -1).mean(1)


# ----------------------------------------------------------------------------- registry

VARIANTS: Registry[Callable[..., Aligner]] = Registry("alignment variant")
VARIANTS.add("gan", GanAligner)
VARIANTS.add("ct", lambda n, d, **kw: CTAligner(n, d, axis="tokens", **kw))
VARIANTS.add("ct-heads", lambda n, d, **kw: CTAligner(n, d, axis="heads", **kw))
VARIANTS.add("combine", CombineAligner)
VARIANTS.add("mmd", MMDAligner)
VARIANTS.add("sinkhorn", SinkhornAligner)


def build_aligner(variant: str, n_layers: int, d_head: int, **options) -> Aligner:
    """The variant's Aligner for N layers of head width d_head; unknown options -> UsageError."""
    factory = VARIANTS.get(variant)
    try:
        return factory(n_layers, d_head, **options)
    except TypeError as exc:
        raise UsageError(f"variant '{variant}' does not take option(s) {sorted(options)}: {exc}") from None
