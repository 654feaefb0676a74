"""The alignment side of a training step: the variant's auxiliary players (their optimizer, their
updates on detached keys and queries) and the encoder's alignment term, on the keys and queries the
hooks captured. The training loop and benchmarks/align_overhead.py both call `Game.alignment_term`."""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from aligneval.align.hooks import attach
from aligneval.align.reach import below_scale, is_scalable, scale_below
from aligneval.align.variants import build_aligner
from aligneval.errors import UsageError

# The auxiliary players' defaults, chosen by measurement (docs/align.md): their learning rate is
# AUX_LR_RATIO × the model's unless given (two time scales: the discriminator must outpace the keys)
AUX_LR_RATIO = 30.0
# aux_steps None: the variant's own default (`Aligner.aux_steps`: 5 for gan, 3 for the ct family)
AUX_DEFAULTS = {"aux_lr": None, "aux_steps": None}


@dataclass
class Game:
    """The alignment side of one training step: the auxiliary players' updates and the encoder's
    alignment term. The training loop and benchmarks/align_overhead.py both call `alignment_term`,
    so the benchmark times exactly what training runs."""

    aligner: Any
    capture: Any
    aux_optimizer: Any
    aux_params: list
    layer_weight: float
    aux_steps: int
    clip: float
    reduce: Any = None  # several processes: averages the auxiliary gradients, so every copy stays equal
    below_alpha: float | None = None  # the share of λ that reaches below the q/k projections (None: all of it)

    def alignment_term(self, mask, sums: "StepSums | None" = None):
        """(λ/L) · Σ_l encoder_loss_l on the keys and queries captured in the forward just run,
        after `aux_steps` updates of the auxiliary networks on the same (detached) keys and queries."""
        k, q = self.capture.stacked()  # [N, B, H, L, d_h] views of one contiguous copy each
        self.capture.clear()
        if self.aux_optimizer is not None:
            aux = aux_updates(self.aligner, self.aux_optimizer, self.aux_params, k, q, mask, self.aux_steps,
                               self.clip, self.reduce)
            if sums is not None:
                sums.add_aux(*aux)
        with held_fixed(self.aux_params):
            per_layer = self.aligner.encoder_loss(k, q, mask)
        if sums is not None:
            sums.add_encoder(per_layer.detach())
        return self.layer_weight * per_layer.sum()


def build_game(model, variant: str, lam: float, options: dict, aux: dict, seed: int, probe_batch: dict,
               qk_pattern: str | None = None, clip: float = 1.0) -> Game:
    """Hook the trainable q/k projections of `model` and build its auxiliary players (module doc)."""
    capture = attach(model, qk_pattern, trainable_only=True)
    aligner, regularized = build_aligner_for(model, capture, probe_batch, variant, options, seed)
    alpha = limit_below(capture, getattr(aligner, "below", None), lam)
    aux_optimizer, aux_params = build_aux_optimizer(aligner, aux)
    return Game(aligner, capture, aux_optimizer, aux_params, lam / total_layers(model, regularized),
                int(aux.get("aux_steps") or aligner.aux_steps), clip, below_alpha=alpha)


def limit_below(capture, below: float | None, lam: float) -> float | None:
    """Above λ = `below`, the term reaches the layers below the q/k projections at weight `below` only
    (align/reach.py); projections whose weights it cannot reach keep λ everywhere, and say so.
    Returns the share α of λ the layers below get (None: all of it)."""
    alpha = below_scale(below, lam)
    if alpha is None:
        return None
    capture.reach = functools.partial(scale_below, alpha=alpha)
    kinds = sorted({module_kind(m) for m in capture.modules if not is_scalable(m)})
    if kinds:
        warnings.warn(f"gan below={below:g} reaches the weights of linear q/k projections only: below the "
                      f"{', '.join(kinds)} modules the alignment term keeps λ = {lam:g}", stacklevel=3)
    return alpha


def module_kind(module) -> str:
    """A module's class name, with its package unless torch's or transformers' (peft's LoRA layer is "Linear")."""
    cls = type(module)
    package = cls.__module__.split(".")[0]
    return cls.__qualname__ if package in ("torch", "transformers") else f"{package} {cls.__qualname__}"


def aux_updates(aligner, aux_optimizer, aux_params, k, q, mask, steps: int, clip: float, reduce=None):
    """`steps` updates of the auxiliary networks on this batch's detached keys and queries;
    returns (their loss, their diagnostic) per layer from the last update, both [N]."""
    k, q = k.detach(), q.detach()
    for _ in range(steps):
        aux_optimizer.zero_grad(set_to_none=True)
        value, diagnostic = aligner.aux_loss(k, q, mask)
        value.sum().backward()
        if reduce is not None:
            for p, g in zip(aux_params, reduce([p.grad for p in aux_params])):
                p.grad = g
        if clip:
            torch.nn.utils.clip_grad_norm_(aux_params, clip)
        aux_optimizer.step()
        aligner.constrain()
    aux_optimizer.zero_grad(set_to_none=True)
    return value.detach(), diagnostic.detach()


@dataclass
class StepSums:
    """Per-layer sums over the micro-batches of one optimizer step, for the training log."""

    task: float = 0.0
    encoder: Any = None
    aux: Any = None
    diagnostic: Any = None

    @staticmethod
    def _plus(total, value):
        return value if total is None else total + value

    def add_encoder(self, per_layer) -> None:
        self.encoder = self._plus(self.encoder, per_layer)

    def add_aux(self, value, diagnostic) -> None:
        self.aux, self.diagnostic = self._plus(self.aux, value), self._plus(self.diagnostic, diagnostic)

    def record(self, parts: int, aligner) -> dict:
        def layers(total):
            return None if total is None else [round(float(v) / parts, 6) for v in total]

        encoder = layers(self.encoder)
        diagnostic = layers(self.diagnostic) if self.diagnostic is not None else encoder
        return {
            "task_loss": self.task / parts,
            "alignment_loss": None if encoder is None else sum(encoder) / len(encoder),
            "alignment_loss_layers": encoder,
            "aux_loss": None if self.aux is None else round(float(self.aux.mean()) / parts, 6),
            "diagnostic": None if aligner is None else aligner.diagnostic,
            "diagnostic_layers": None if aligner is None else diagnostic,
        }


def build_aux_optimizer(aligner, aux: dict):
    """The auxiliary players' own Adam at their own constant rate (GAN practice: β1 = 0.5), so the
    discriminator or critic keeps up with the encoder whatever the task's learning rate and schedule."""
    params = [p for p in aligner.parameters()] if aligner is not None else []
    if not params:
        return None, []
    return torch.optim.Adam(params, lr=aux["aux_lr"], betas=(0.5, 0.999), eps=1e-8), params


@contextlib.contextmanager
def held_fixed(params):
    """The auxiliary networks as fixed functions while the encoder's loss is built (no gradient
    is computed or kept for them)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def build_aligner_for(model, capture, batch: dict, variant: str, options: dict, seed: int):
    """Probe one eval-mode forward (no RNG use) for the layer count and head width, then build the
    aligner under a forked RNG so the global stream stays the baseline's."""


    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        model(**{k: v.to(device) for k, v in batch.items()})
    layers = capture.layers()
    capture.clear()
    model.train()
    shapes = {tuple(q.shape[1:]) for q, _ in layers} | {tuple(k.shape[1:]) for _, k in layers}
    if len({s[0] for s in shapes}) != 1 or len({s[2] for s in shapes}) != 1:
        raise UsageError(f"attention layers differ in head count or width {sorted(shapes)}; not supported")
    d_head = layers[0][0].shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        aligner = build_aligner(variant, len(layers), d_head, **options)
        aligner.fit_heads(layers[0][0].shape[1])
    aligner.seed(seed + 2)
    return aligner.to(device).train(), len(layers)


def total_layers(model, regularized: int) -> int:
    """The model's attention-layer count, frozen ones included: λ is divided by it, so each
    regularized layer weighs λ/L whatever --freeze-layers is."""
    value = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None)
    return max(int(value), regularized) if isinstance(value, int) and value > 0 else regularized

