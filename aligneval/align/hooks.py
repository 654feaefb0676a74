"""Find the query/key projections of every self-attention layer and capture per-head Q and K.

The capture is a forward hook on each projection `nn.Linear`: it records the projection's output
split into heads ([B, H, L, d_h], before the 1/sqrt(d_h) scaling) and returns nothing, so the
forward pass is exactly the original architecture's. Which modules are the projections comes from
a registry keyed by `config.model_type`; an unknown architecture can name them with a pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aligneval.errors import UsageError
from aligneval.registry import Registry

QK_PATTERN_OPTION = "--qk-pattern 'QUERY,KEY'"


@dataclass(frozen=True)
class ArchSpec:
    """Where an architecture keeps its q/k projections and its stack of encoder layers.

    `query` / `key` are regular expressions matched (fullmatch) against the last component of a
    module's dotted name or against the whole name. `layers` is the dotted path, relative to the
    base model, of the `nn.ModuleList` of encoder layers (None when layers share weights).
    """

    query: str
    key: str
    layers: str | None = "encoder.layer"


ARCHITECTURES: Registry[ArchSpec] = Registry("architecture")
for _name in ("bert", "roberta", "xlm-roberta", "electra"):
    ARCHITECTURES.add(_name, ArchSpec("query", "key"))
ARCHITECTURES.add("albert", ArchSpec("query", "key", layers=None))  # one layer shared across depth
ARCHITECTURES.add("distilbert", ArchSpec("q_lin", "k_lin", layers="transformer.layer"))
ARCHITECTURES.add("deberta-v2", ArchSpec("query_proj", "key_proj"))
ARCHITECTURES.add("mpnet", ArchSpec("q", "k"))


def parse_qk_pattern(pattern: str) -> ArchSpec:
    """'query,key' (or two regular expressions) -> ArchSpec; layers are then found by shape."""
    parts = [p.strip() for p in pattern.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--qk-pattern must be two module-name patterns 'QUERY,KEY', not '{pattern}'")
    for part in parts:
        try:
            re.compile(part)
        except re.error as exc:
            raise UsageError(f"--qk-pattern: '{part}' is not a valid regular expression ({exc})") from None
    return ArchSpec(parts[0], parts[1], layers=None)


def arch_spec(config: Any, qk_pattern: str | None = None) -> ArchSpec:
    """The spec for this config; unknown architectures need `qk_pattern` (one-line UsageError)."""
    if qk_pattern:
        return parse_qk_pattern(qk_pattern)
    model_type = getattr(config, "model_type", None) or "unknown"
    if model_type not in ARCHITECTURES:
        raise UsageError(
            f"unsupported architecture '{model_type}': supported are {', '.join(ARCHITECTURES.names())}; "
            f"for others name the query/key projection modules with {QK_PATTERN_OPTION}"
        )
    return ARCHITECTURES.get(model_type)


def _matches(pattern: str, name: str) -> bool:
    return bool(re.fullmatch(pattern, name.rsplit(".", 1)[-1]) or re.fullmatch(pattern, name))


def _is_projection(name: str, module: Any) -> bool:
    """An nn.Linear, or a peft adapter layer around one (LoRA): hooking the adapter layer captures the
    adapted projection's output, so the alignment gradient reaches the adapter's weights. The
    adapter's own inner Linears (base_layer, lora_A/B) are not projections."""
    from torch import nn

    if ".lora_" in name or name.endswith("base_layer"):
        return False
    return isinstance(module, nn.Linear) or isinstance(getattr(module, "base_layer", None), nn.Linear)


def find_qk_modules(model: Any, spec: ArchSpec) -> list[tuple[str, Any, str, Any]]:
    """(q_name, q_module, k_name, k_module) per attention layer, in model order.

    The i-th query Linear is paired with the i-th key Linear; both lists must have the same length.
    """
    qs = [(n, m) for n, m in model.named_modules() if _is_projection(n, m) and _matches(spec.query, n)]
    ks = [(n, m) for n, m in model.named_modules() if _is_projection(n, m) and _matches(spec.key, n)]
    if not qs or len(qs) != len(ks):
        raise UsageError(
            f"found {len(qs)} query and {len(ks)} key projection(s) matching '{spec.query}' / '{spec.key}'; "
            f"name the nn.Linear query/key modules with {QK_PATTERN_OPTION}"
        )
    return [(qn, qm, kn, km) for (qn, qm), (kn, km) in zip(qs, ks)]


def num_heads(config: Any) -> int:
    """Attention heads per layer (DistilBERT calls it n_heads; its config maps the standard name)."""
    for attr in ("num_attention_heads", "n_heads", "n_head"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise UsageError("the model config names no head count (num_attention_heads)")


def split_heads(x: Any, heads: int) -> Any:
    """[B, L, H*d_h] -> [B, H, L, d_h], the same split every supported architecture uses."""
    b, length, width = x.shape
    if width % heads:
        raise UsageError(f"projection width {width} is not divisible by {heads} heads")
    return x.view(b, length, heads, width // heads).permute(0, 2, 1, 3)


class QKCapture:
    """Forward hooks that record per-head Q and K of each call of each hooked projection.

    Layers that share weights (ALBERT) call the same Linear several times; each call is one layer.
    Use as a context manager or call `remove()`; `layers()` returns [(q, k), ...] in call order,
    `stacked()` all of them as two [N, B, H, L, d_h] tensors, and `clear()` forgets them (call it
    after each step); `enabled = False` pauses recording.

    The projections' outputs are kept as they come, [B, L, H·d_h]: `stacked()` copies them once,
    contiguously, into [N, B, L, H·d_h] and returns the per-head view of that, so the one copy is a
    plain memcpy and each layer's gradient comes back contiguous, in the projection's own layout.
    """

    def __init__(self, modules: list[tuple[str, Any, str, Any]], heads: int):
        self.heads = heads
        self.enabled = True  # set False to run forwards (e.g. evaluation) without recording
        self._q: list[Any] = []
        self._k: list[Any] = []
        self._handles = []
        seen: set[int] = set()
        for _, qm, _, km in modules:
            if id(qm) in seen:  # shared layers: hook each module once, every call is recorded
                continue
            seen.add(id(qm))
            self._handles.append(qm.register_forward_hook(self._hook(self._q)))
            self._handles.append(km.register_forward_hook(self._hook(self._k)))

    def _hook(self, store: list):
        def hook(module, inputs, output):
            if self.enabled:
                split_heads(output, self.heads)  # checks the width now, at the layer that has it wrong
                store.append(output)
            # returning None leaves the module's output untouched

        return hook

    def _check(self) -> None:
        if len(self._q) != len(self._k):
            raise RuntimeError(f"captured {len(self._q)} query and {len(self._k)} key projections")

    def layers(self) -> list[tuple[Any, Any]]:
        self._check()
        return [(split_heads(q, self.heads), split_heads(k, self.heads)) for q, k in zip(self._q, self._k)]

    def stacked(self) -> tuple[Any, Any]:
        """(k, q), each [N, B, H, L, d_h]: the N recorded layers as views of one contiguous
        [N, B, L, H·d_h] copy (what `torch.stack` of `layers()` gives, without its strided copy)."""
        import torch

        self._check()

        def stack(outputs: list) -> Any:
            x = torch.stack(outputs)
            n, b, length, width = x.shape
            return x.view(n, b, length, self.heads, width // self.heads).transpose(2, 3)

        return stack(self._k), stack(self._q)

    def clear(self) -> None:
        self._q.clear()
        self._k.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def __enter__(self) -> "QKCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def attach(model: Any, qk_pattern: str | None = None, trainable_only: bool = False) -> QKCapture:
    """Hook the q/k projections of `model` (only those with trainable weights if asked)."""
    spec = arch_spec(model.config, qk_pattern)
    modules = find_qk_modules(model, spec)
    if trainable_only:
        modules = [m for m in modules if _trains(m[1]) or _trains(m[3])]
        if not modules:
            raise UsageError("every attention layer is frozen: lower --freeze-layers")
    return QKCapture(modules, num_heads(model.config))


def _trains(module: Any) -> bool:
    """Any trainable parameter (a LoRA layer's frozen base weight next to its trainable adapter counts)."""
    return any(p.requires_grad for p in module.parameters())


def encoder_layers(model: Any, spec: ArchSpec) -> Any | None:
    """The base model's ModuleList of encoder layers, or None when layers share weights."""
    from torch import nn

    base = model.base_model
    if spec.layers is not None:
        obj = base
        for part in spec.layers.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    depth = getattr(model.config, "num_hidden_layers", None)
    for _, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth and depth and depth > 1:
            return module
    return None


def freeze_targets(model: Any, n_layers: int, qk_pattern: str | None = None) -> list[Any]:
    """The modules `--freeze-layers n_layers` freezes: embeddings + bottom encoder layers (validated)."""
    if n_layers <= 0:
        return []
    spec = arch_spec(model.config, qk_pattern)
    layers = encoder_layers(model, spec)
    if layers is None:
        raise UsageError(
            f"{model.config.model_type} shares its layers (or they were not found); --freeze-layers needs 0"
        )
    if n_layers >= len(layers):
        raise UsageError(f"--freeze-layers {n_layers} leaves nothing to train: the model has {len(layers)} layers")
    embeddings = getattr(model.base_model, "embeddings", None)
    return ([embeddings] if embeddings is not None else []) + list(layers[:n_layers])


def freeze_bottom(model: Any, n_layers: int, qk_pattern: str | None = None) -> None:
    """Freeze the embeddings and the bottom `n_layers` encoder layers (requires_grad=False)."""
    for module in freeze_targets(model, n_layers, qk_pattern):
        for p in module.parameters():
            p.requires_grad_(False)
