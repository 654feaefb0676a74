"""sinkhorn: debiased entropic optimal transport between each head's keys and queries."""

from __future__ import annotations

import torch

from aligneval.align.blocks import token_mask, zero_padding
from aligneval.align.kernels import sinkhorn_divergence, squared_distances
from aligneval.align.variants import Aligner, register_variant
from aligneval.errors import UsageError

def _per_example_head(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, B, H, L, d] -> ([N·B·H, L, d], valid [N·B·H, L])."""
    n, b, h, length, d = x.shape
    valid = token_mask(mask).expand(n, b, h, length).reshape(-1, length)
    return x.reshape(-1, length, d), valid


@register_variant("sinkhorn", help="debiased entropic OT (Sinkhorn divergence) between each head's keys and queries, "
                  "no auxiliary network (options: eps, iters, relative).")
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
        k, q = zero_padding(k.contiguous(), mask), zero_padding(q.contiguous(), mask)  # heads-major, as ct
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

