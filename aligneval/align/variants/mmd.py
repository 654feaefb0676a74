"""mmd: unbiased squared MMD between each head's keys and queries (no auxiliary network)."""

from __future__ import annotations

import torch

from aligneval.align.kernels import MMD_BLOCK, MMD_SCALES, mmd2_groups, mmd2_linear_groups
from aligneval.align.variants import Aligner, register_variant
from aligneval.errors import UsageError

MMD_ESTIMATORS = {"quadratic": mmd2_groups, "linear": mmd2_linear_groups}


@register_variant("mmd", help="unbiased squared MMD between each head's keys and queries, no auxiliary network "
                  "(options: estimator, block).")
class MMDAligner(Aligner):
    """mmd: unbiased squared MMD between each head's keys and queries (no parameters).

    estimator="quadratic" (default) is the U-statistic over all token pairs (`mmd2_unbiased`), taken
    within consecutive blocks of ≤ `block` tokens when an input is longer (the block U-statistic: still
    unbiased, O(L·block); block=0: all pairs, O(L²)); "linear" the linear-time one over disjoint
    pairs (`mmd2_linear_groups`): far cheaper, noisier.
    """

    diagnostic = "mmd2"

    def __init__(self, n_layers: int, d_head: int, scales: tuple[float, ...] = MMD_SCALES,
                 estimator: str = "quadratic", block: int = MMD_BLOCK):
        super().__init__()
        if estimator not in MMD_ESTIMATORS:
            raise UsageError(f"mmd estimator must be one of {', '.join(MMD_ESTIMATORS)}, not '{estimator}'")
        if isinstance(block, bool) or not isinstance(block, int) or block < 0 or block == 1:
            raise UsageError(f"mmd block must be 0 (all pairs) or a whole number of tokens ≥ 2, not {block!r}")
        self.scales = tuple(float(s) for s in scales)
        self.estimator = estimator
        self.block = block

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, b, h, length, d = k.shape  # [N·B, H, L, d] is a view of the capture's stack: nothing is copied
        valid = mask.bool().repeat(n, 1)
        extra = {"block": self.block} if self.estimator == "quadratic" else {}
        value, usable = MMD_ESTIMATORS[self.estimator](k.reshape(n * b, h, length, d), q.reshape(n * b, h, length, d),
                                                       valid, self.scales, **extra)
        value, usable = value.view(n, -1), usable.view(n, -1).to(value.dtype)
        return (value * usable).sum(1) / usable.sum(1).clamp_min(1.0)

