"""How far below the q/k projections the alignment term's gradient reaches.

The paper's objective sends λ·∂D/∂k through the key projection into every layer below it. On
all-MiniLM-L6-v2 that weight, not the variant, is what costs accuracy: any term weighted 0.3 or more
in the layers below (gan at λ 0.3, ct and mmd at λ 1) lost 1.4–4.5 points, while the projections'
own weights take λ = 3 at no cost (docs/align.md). `scale_below` keeps the projection's weight
gradient whole and scales only the gradient into its input by α (identity forward), so λ can push
the projections while the layers below see α·λ.

One extra product per captured projection (the weight gradient's missing (1 − α) share), taken in
backward and only for the outputs the term differentiates (gan's detached queries cost nothing).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


# projection type -> whether its weight is stored [in, out] (GPT-2's Conv1D) rather than [out, in] (nn.Linear);
# a subclass counts as its base (peft's LoRA layers are not subclasses of either)
WEIGHT_IN_OUT: dict[type, bool] = {nn.Linear: False, Conv1D: True}


class _ScaleBelow(torch.autograd.Function):
    """Identity on a projection's output y = x·W(+b); backward sends α·g on into y's own graph (W and
    x both get α·g) and adds the (1 − α) share of W's and b's gradient directly, so W and b get all
    of g and x gets α·g."""

    @staticmethod
    def forward(ctx, y, x, weight, bias, alpha: float, in_out: bool):
        ctx.save_for_backward(x)
        ctx.alpha, ctx.in_out, ctx.has_bias, ctx.dtype = alpha, in_out, bias is not None, weight.dtype
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        rest = 1.0 - ctx.alpha
        g = grad.reshape(-1, grad.shape[-1])
        xs = x.reshape(-1, x.shape[-1]).to(g.dtype)
        weight_grad = (rest * (xs.T @ g if ctx.in_out else g.T @ xs)).to(ctx.dtype)
        bias_grad = (rest * g.sum(0)).to(ctx.dtype) if ctx.has_bias else None
        return grad * ctx.alpha, None, weight_grad, bias_grad, None, None


def scale_below(module: Any, inputs: tuple, output: Any, alpha: float):
    """`output` of a q/k projection `module`, with the gradient into its input scaled by `alpha`
    (its weights' gradient whole); `output` itself when the module is not a plain linear projection
    (a LoRA wrapper, a per-head norm: `is_scalable` says so before training) or is frozen."""
    in_out = _weight_in_out(module)
    if in_out is None or not module.weight.requires_grad:
        return output
    bias = module.bias if module.bias is not None and module.bias.requires_grad else None
    return _ScaleBelow.apply(output, inputs[0], module.weight, bias, alpha, in_out)


def _weight_in_out(module: Any) -> bool | None:
    """WEIGHT_IN_OUT for the module's class or its nearest listed base; None when neither is listed."""
    return next((WEIGHT_IN_OUT[t] for t in type(module).__mro__ if t in WEIGHT_IN_OUT), None)


def is_scalable(module: Any) -> bool:
    """Whether `scale_below` can reach this projection's weights."""
    return _weight_in_out(module) is not None


def below_scale(below: float | None, lam: float) -> float | None:
    """α for `scale_below` at λ: below/λ when λ exceeds the cap, else None (nothing to scale)."""
    return None if below is None or lam <= below else below / lam
