"""The shared building blocks of the alignment variants: gradient reversal, the auxiliary networks
(discriminator, critic, navigator), their seeded randomness, and the padding masks.

Padding is masked everywhere (a deliberate change from the authors' code): padded positions are
replaced by zeros before any computation and weighted out of every mean, so garbage in the padding
changes neither the value nor the gradient.

The auxiliary networks (discriminator, critic, navigator) have one set of parameters per layer,
shared by that layer's heads, stored stacked ([N, ...]) so all layers run in one batched matmul.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

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


def project_spectral(layers, bound: float) -> None:
    """W_n ← W_n · min(1, bound / σ_max(W_n)) for every layer n of each StackedLinear: each matrix's
    operator norm is at most `bound`, so the network is Lipschitz-bounded (the exact projection that
    spectral normalisation approximates by power iteration; the matrices are tiny, so an SVD is cheap)."""
    with torch.no_grad():
        for lin in layers:
            w = lin.weight if lin.weight.dtype in (torch.float32, torch.float64) else lin.weight.float()
            sigma = torch.linalg.matrix_norm(w, ord=2).to(lin.weight.dtype)  # [N]
            lin.weight.mul_((bound / sigma.clamp_min(1e-12)).clamp(max=1.0)[:, None, None])


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
        keep = self.mask(x.shape, x.dtype, x.device)
        return x if keep is None else x * keep

    def mask(self, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """The scaled keep mask (0 or 1/(1−p)) for one input of `shape`; None when inactive."""
        if not self.training or self.p == 0.0:
            return None
        if self._seed is not None and (self.generator is None or self.generator.device != device):
            self.generator = torch.Generator(device=device).manual_seed(self._seed)
        # 16 random bits per element, four from each 64-bit draw: a generator's draws are serial, and
        # torch.rand spends one 32-bit draw per element (a third of the gan step's overhead on CPU);
        # p is applied to 2⁻¹⁶ (keep when the bits, read as int16, are ≥ −2¹⁵ + round(p·2¹⁶))
        count = math.prod(shape)
        words = torch.randint(-(2**63), 2**63 - 1, ((count + 3) // 4,), generator=self.generator,
                              dtype=torch.int64, device=device)
        bits = words.view(torch.int16)[:count].view(shape)
        keep = bits >= round(self.p * 65536) - 32768
        return keep.to(dtype).mul_(1.0 / (1.0 - self.p))


class SeededStream:
    """A generator of its own for an auxiliary player's random draws (subsamples, noise), made on the
    device of first use, so the global RNG (the backbone's dropout) is never consumed."""

    def __init__(self):
        self._seed: int | None = None
        self.generator: torch.Generator | None = None

    def seed(self, seed: int | None) -> None:
        self._seed, self.generator = seed, None

    def on(self, device: torch.device) -> torch.Generator | None:
        if self._seed is not None and (self.generator is None or self.generator.device != device):
            self.generator = torch.Generator(device=device).manual_seed(self._seed)
        return self.generator


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

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        """The logits without dropout (for the gradient penalty)."""
        return self.out(F.relu(self.hidden(self.highway(x)))).squeeze(-1)

    def linears(self) -> list[StackedLinear]:
        return [self.highway.lin, self.hidden, self.out]


class Critic(nn.Module):
    """τ(x) = normalize(Linear(16→16)(ReLU(Linear(d_h→16)(highway(x))))): unit feature vectors."""

    def __init__(self, n: int, d: int, width: int = AUX_WIDTH):
        super().__init__()
        self.highway = Highway(n, d)
        self.hidden = StackedLinear(n, d, width)
        self.out = StackedLinear(n, width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(F.relu(self.hidden(self.highway(x)))), dim=-1, eps=1e-6)

    def linears(self) -> list[StackedLinear]:
        return [self.highway.lin, self.hidden, self.out]


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


def full_precision(x: torch.Tensor, dtype: torch.dtype | None = None):
    """(x in float32, or in `dtype`, when it is half precision; a context with autocast off): the fused
    kernels (align/kernels.py) mix in-place and out= ops, which autocast does not cast, and their sums and
    exponentials want float32 inside a mixed-precision step anyway."""
    if dtype is None:
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    available = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))
    off = torch.autocast(x.device.type, enabled=False) if available(x.device.type) else contextlib.nullcontext()
    return x.to(dtype), off


def token_rows(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """[N, B, H, L, d] -> (rows [N, R, d], weight per row [R], index of the valid rows or None if all are).

    The rows are a view whenever x's memory allows it, in (b, h, l) or (b, l, h) order, so nothing
    is gathered or copied; a weight 1/(n_b·H·B) turns a sum over a layer's valid rows into the mean
    over examples of each example's mean over its heads and valid tokens (as `weighted_token_mean`).
    """
    n, b, h, length, d = x.shape
    valid = mask.bool()
    per_example = 1.0 / (valid.sum(-1).clamp_min(1).to(x.dtype) * (h * b))
    if x.transpose(2, 3).is_contiguous() and not x.is_contiguous():  # (b, l, h): the projections' layout
        rows = x.transpose(2, 3).reshape(n, -1, d)
        row_valid = valid[:, :, None].expand(b, length, h).reshape(-1)
        weight = per_example[:, None, None].expand(b, length, h).reshape(-1)
    else:
        rows = x.reshape(n, -1, d)
        row_valid = valid[:, None, :].expand(b, h, length).reshape(-1)
        weight = per_example[:, None, None].expand(b, h, length).reshape(-1)
    index = None if bool(row_valid.all()) else row_valid.nonzero().squeeze(-1)
    return rows, weight, index


def head_rows(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """[N, B, H, L, d] -> (rows [N, H, B·L, d], weight per position [B·L], index of the valid positions or
    None if all are): each head's vectors apart, for players with one network per head. A view when x's
    memory is (b, l, h) ordered (the projections' layout), else one copy. The weight 1/(n_b·H·B) makes
    the sum over heads and valid positions the same mean as `token_rows`'s."""
    n, b, h, length, d = x.shape
    valid = mask.bool()
    per_example = 1.0 / (valid.sum(-1).clamp_min(1).to(x.dtype) * (h * b))
    rows = x.permute(0, 2, 1, 3, 4).reshape(n, h, b * length, d)
    flat = valid.reshape(-1)
    index = None if bool(flat.all()) else flat.nonzero().squeeze(-1)
    return rows, per_example[:, None].expand(b, length).reshape(-1), index


def grouped_rows(x: torch.Tensor, mask: torch.Tensor, per_head: bool):
    """(rows [N, G, R, d], weight [R], index or None): `head_rows` (G = H) or `token_rows` as one group
    (G = 1, a view), the layout the fused discriminator loss and gan's R1 penalty both take."""
    if per_head:
        return head_rows(x, mask)
    rows, weight, index = token_rows(x, mask)
    return rows.unsqueeze(1), weight, index
