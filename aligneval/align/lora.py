"""LoRA twins: the baseline and its aligned twin trained as low-rank adapters (peft), saved merged.

`--lora r=8,alpha=16` wraps the loaded model once, under a fixed seed, before the twins are copied
from it, so both start from the same adapter initialisation (and see the same data order, as in
full fine-tuning). By default the adapters sit on the q/k projections the registry
(align/hooks.py) names for the architecture, so the alignment term's gradient reaches the keys and
queries through them; `targets=` adds others (e.g. `targets=query+key+value`). The task head
(every top-level module outside the encoder) trains in full, as peft's `modules_to_save`. Each twin
is saved with `merge_and_unload()`: a plain transformers model, so prediction, the suites and the
reports never see peft. The card records the settings and the trainable-parameter count.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

from aligneval.align.hooks import arch_spec, find_qk_modules
from aligneval.errors import ResourceError, UsageError
from aligneval.registry import did_you_mean

KEYS = ("r", "alpha", "dropout", "targets")
PEFT_DEPRECATED_READ = "`is_gradient_checkpointing` is deprecated"
EXAMPLE = "--lora r=8,alpha=16 (also dropout=0.05, targets=query+key+value)"


@dataclass(frozen=True)
class LoraSettings:
    """Adapter rank, scale numerator (peft's lora_alpha: the update is scaled by alpha / r), dropout
    on the adapter's input, and target module names (None: the registry's q/k projections)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets) if self.targets else "q/k projections (registry)"
        return d


def parse_lora(value: str | dict | LoraSettings | None) -> LoraSettings | None:
    """`r=8,alpha=16[,dropout=0.05][,targets=query+key]` (or a dict, or settings) -> LoraSettings;
    None or "" -> None (full fine-tuning). Any bad key or value is one UsageError line."""
    if value is None or isinstance(value, LoraSettings):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        pairs = {}
        for part in value.split(","):
            key, sep, raw = part.partition("=")
            if not sep or not key.strip() or not raw.strip():
                raise UsageError(f"--lora takes KEY=VALUE pairs, not '{part.strip()}'; e.g. {EXAMPLE}")
            pairs[key.strip()] = raw.strip()
        value = pairs
    if not isinstance(value, dict):
        raise UsageError(f"--lora: expected settings like {EXAMPLE}, not {value!r}")
    for key in value:
        if key not in KEYS:
            raise UsageError(f"--lora: unknown setting '{key}'{did_you_mean(str(key), list(KEYS))}; "
                             f"settings: {', '.join(KEYS)}")
    r = _number(value.get("r", 8), "r", int)
    alpha = _number(value.get("alpha", 16), "alpha", float)
    dropout = _number(value.get("dropout", 0.0), "dropout", float)
    if r < 1:
        raise UsageError(f"--lora r must be a whole number >= 1, not {r}")
    if alpha <= 0:
        raise UsageError(f"--lora alpha must be positive, not {alpha}")
    if not 0.0 <= dropout < 1.0:
        raise UsageError(f"--lora dropout must lie in [0, 1), not {dropout}")
    targets = value.get("targets")
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split("+")]
    if targets is not None and (not targets or not all(isinstance(t, str) and t for t in targets)):
        raise UsageError(f"--lora targets: module names joined by '+', e.g. query+key+value, not {value['targets']!r}")
    return LoraSettings(r, alpha, dropout, tuple(targets) if targets else None)


def _number(raw: Any, name: str, kind: type) -> Any:
    try:
        number = kind(raw) if kind is float else int(str(raw))
    except (TypeError, ValueError):
        raise UsageError(f"--lora {name} must be {'a whole number' if kind is int else 'a number'}, "
                         f"not '{raw}'") from None
    if kind is float and not math.isfinite(number):
        raise UsageError(f"--lora {name} must be finite, not {raw}")
    return number


def check_compatible(settings: LoraSettings | None, freeze_layers: int) -> None:
    """Before any work: peft is installed, and nothing else asks to freeze layers."""
    if settings is None:
        return
    if importlib.util.find_spec("peft") is None:
        raise ResourceError("--lora needs the peft library: pip install 'aligneval[lora]'")
    if freeze_layers:
        raise UsageError("--freeze-layers does not combine with --lora: with adapters only they and the "
                         "task head train already")


def head_modules(model: Any) -> list[str]:
    """The task head: the top-level modules with parameters outside the encoder (`classifier`,
    DistilBERT's `pre_classifier`, a decoder's `score`). New and randomly initialised, they train in full."""
    prefix = getattr(model, "base_model_prefix", "")
    return [name for name, child in model.named_children()
            if name != prefix and any(True for _ in child.parameters())]


def adapt(model: Any, settings: LoraSettings | None, seed: int, qk_pattern: str | None = None) -> Any:
    """`model` with LoRA adapters (a peft model), initialised under `seed` without touching the
    global RNG stream; the model itself when `settings` is None."""
    if settings is None:
        return model
    from peft import LoraConfig, get_peft_model  # optional: the `lora` extra

    qk_names = list(dict.fromkeys(n for q, _, k, _ in find_qk_modules(model, arch_spec(model.config, qk_pattern))
                                  for n in (q, k)))
    targets = list(settings.targets) if settings.targets else qk_names
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, modules_to_save=head_modules(model), bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():
                # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` when it wraps a
                # model: peft's call, not ours, and nothing a user can change
                warnings.filterwarnings("ignore", message=PEFT_DEPRECATED_READ, category=FutureWarning)
                wrapped = get_peft_model(model, config)
        except ValueError as exc:  # peft: a target that matches nothing
            raise UsageError(f"--lora targets {targets}: {str(exc).splitlines()[0]}") from None
    missed = [n for n in qk_names if not hasattr(model.get_submodule(n), "base_layer")]
    if missed:
        raise UsageError(f"--lora targets {targets} leave the query/key projection(s) {missed[:2]} without an "
                         "adapter; the alignment term acts on them, so include them")
    return wrapped


def parameter_counts(model: Any, full_size: int) -> dict[str, Any]:
    """Trainable parameters of the adapted model against the size of the plain (merged) model."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "model_parameters": full_size,
            "trainable_fraction": round(trainable / full_size, 6)}


def card(settings: LoraSettings, model: Any, full_size: int) -> dict[str, Any]:
    """What alignment.json records: the adapter settings, the targets as resolved, the counts, merged."""
    peft = sys.modules.get("peft")
    targets = sorted(getattr(model.peft_config["default"], "target_modules", None) or [])
    return {**settings.to_dict(), "resolved_targets": targets, **parameter_counts(model, full_size),
            "peft": getattr(peft, "__version__", None), "saved": "merged (merge_and_unload)"}


def for_saving(model: Any) -> Any:
    """The model to `save_pretrained`: a peft model merged into plain transformers weights."""
    peft = sys.modules.get("peft")
    if peft is not None and isinstance(model, peft.PeftModel):
        return model.merge_and_unload()
    return model
