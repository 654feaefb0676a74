"""The alignment variants: each one file in this package (or in a plugin) that registers a factory
with `register_variant`; the registry finds the built-in modules itself and loads plugins before any
lookup, so a new variant needs no edit anywhere else (docs/extending.md).

Every variant is an `Aligner` module: `aligner(k, q, mask) -> Tensor[N]`, one value per layer, where
k and q are the stacked per-head keys and queries of N layers, [N, B, H, L, d_h], and mask is the
attention mask [B, L] (1 = real token). Each value is already the mean over examples and heads, so
the training objective is `task_loss + λ · aligner(k, q, mask).mean()` (METHOD.md).

The min-max games are played by two optimizers (aligneval/align/game.py): `aux_loss` on detached
keys and queries is what the auxiliary networks descend (gradient reversal inside the graph gives
each of them its direction: the discriminator lowers its log-loss, the critic raises the transport
cost), with their own learning rate and update count; `encoder_loss` is what the attention
projections descend, with the auxiliary networks held fixed. `forward` is the game's value.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from aligneval.align.blocks import SeededDropout, SeededStream
from aligneval.errors import UsageError
from aligneval.plugins import load_plugins
from aligneval.registry import Registry


class Aligner(nn.Module):
    """Base: forward(k, q, mask) -> the game's value per layer [N].

    `encoder_loss` is what the attention projections minimize (λ scales it, nothing else);
    `aux_loss` (adversarial variants only) is what the auxiliary networks' own optimizer descends,
    on detached inputs, with a per-layer diagnostic of how well they play (`diagnostic` names it).
    """

    adversarial = False  # True when auxiliary networks play a min-max game against the projections
    aux_steps = 1  # the auxiliary networks' updates per model step unless --aux-steps says otherwise
    diagnostic = "distance"  # the per-layer number the training log records for this variant
    # the largest weight the term has in the layers below the q/k projections (align/reach.py); None:
    # λ everywhere, the paper's objective
    below: float | None = None

    def encoder_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self(k, q, mask)

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss [N] the auxiliary networks descend, diagnostic [N]) on detached k, q."""
        raise NotImplementedError(f"{type(self).__name__} has no auxiliary networks")

    def fit_heads(self, heads: int) -> None:
        """Called once with the model's head count, before training (a player with one network per head
        sizes itself here)."""

    def constrain(self) -> None:
        """Called after each update of the auxiliary networks (e.g. to keep them Lipschitz-bounded)."""

    def seed(self, seed: int | None) -> None:
        """Seed every SeededDropout and SeededStream (each gets its own stream, made on its input's device)."""
        drops = [m for m in self.modules() if isinstance(m, SeededDropout)]
        streams = [v for m in self.modules() for v in vars(m).values() if isinstance(v, SeededStream)]
        for i, module in enumerate(drops + streams):
            module.seed(None if seed is None else seed + i)

    def set_generator(self, generator: torch.Generator | None) -> None:
        for module in self.modules():
            if isinstance(module, SeededDropout):
                module.generator = generator


def below_weight(value: object) -> float | None:
    """The `below` option: a weight >= 0, or "off" (None: λ everywhere)."""
    if value is None or value == "off":
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise UsageError(f"below must be a number >= 0 (0: the projections only) or off, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Variant:
    """A registered variant: its factory `(n_layers, head_dim, **options) -> Aligner` and one line of help."""

    name: str
    factory: Callable[..., Aligner]
    help: str


VARIANTS: Registry[Variant] = Registry("alignment variant")
_discovered = False


def register_variant(name: str, help: str) -> Callable[[Callable[..., Aligner]], Callable[..., Aligner]]:
    """Decorator: register `factory(n_layers, head_dim, **options) -> Aligner` as variant `name`
    (`aligneval align --variant name`); `help` is its one line in `aligneval align --help`."""

    def decorator(factory: Callable[..., Aligner]) -> Callable[..., Aligner]:
        VARIANTS.add(name, Variant(name, factory, " ".join(help.split())))
        return factory

    return decorator


def load_variants() -> Registry[Variant]:
    """The registry with every built-in variant module of this package and every plugin imported (once)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for module in pkgutil.iter_modules(__path__, f"{__name__}."):
            importlib.import_module(module.name)
        load_plugins()
    return VARIANTS


def get_variant(name: str) -> Variant:
    """The registered variant `name`; unknown -> UsageError with "did you mean"."""
    return load_variants().get(name)


def variant_names() -> list[str]:
    return load_variants().names()


def build_aligner(variant: str, n_layers: int, d_head: int, **options) -> Aligner:
    """The variant's Aligner for N layers of head width d_head; unknown options -> UsageError."""
    factory = get_variant(variant).factory
    try:
        return factory(n_layers, d_head, **options)
    except TypeError as exc:
        raise UsageError(f"variant '{variant}' does not take option(s) {sorted(options)}: {exc}") from None
