"""Are the model's keys and queries aligned? Diagnostics for any model in the q/k registry.

On a seeded sample of one split's examples (the same ids for every model), every layer × head gets,
over the real tokens only (padding excluded):
  kq_mmd2       unbiased squared MMD between the keys and the queries of each example
                (sum of RBF kernels at `scales` × the median squared pairwise distance)
  kq_probe_acc  held-out accuracy of a fresh logistic-regression probe telling keys from queries,
                fitted on one seeded half of the sample, scored on the other (0.5 = indistinguishable)
  attn_entropy  mean entropy (nats) of the rows of softmax(QKᵀ/sqrt(d_h)) over the valid keys
Records: `kq_mmd2` (mean over layers and heads), `kq_mmd2@L3` (layer 3, 0-based), `kq_mmd2@L3H5`
(head 5), the same for the other two; value = mean over examples, basis "per_example", so the
comparison bootstraps twin − baseline. Diagnostics carry no better/worse direction.
Per-example values: run_dir/alignment/<model>/<split>.parquet, reused while weights, settings and
sampled ids are unchanged (a re-run loads no model). See docs/alignment.md.

Heads are query heads: with grouped-query attention each is paired with the key head it attends
with (the capture repeats each key head over its group). Padding follows aligneval.padding (the
prediction path's rule) and is masked on either side.

Settings: split (default: the run's test split), num_examples, seed (default: the run's), scales,
probe_c (the probe's inverse L2 strength), probe_max_iter, qk_pattern ('QUERY,KEY' module names, or
'fused=QKV', optionally with heads=N, kv_heads=N, for architectures outside the registry; default:
the model card's), per_head (false: no per-head records).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aligneval import diagnostics
from aligneval.align.hooks import QK_PATTERN_OPTION, attach, parse_qk_pattern
from aligneval.artifacts import as_numpy, read_table, write_float_table
from aligneval.choices import diagnosis_model
from aligneval.errors import ArtifactError, UsageError
from aligneval.padding import fit_tokenizer
from aligneval.predict import (TOKENIZER_FILES, _progress, load_model, model_inputs, padded_batch, sha256_files,
                               weight_files)
from aligneval.records import Record, SuiteOutput
from aligneval.registry import did_you_mean
from aligneval.suites.base import ModelInfo, SuiteContext, register_suite
from aligneval.versions import package_versions

SUITE = "alignment"
VALUES_DIR = "alignment"
VERSION = "1"  # bump when the stored numbers would change for the same inputs
METRICS = ("kq_mmd2", "kq_probe_acc", "attn_entropy")
RUNTIME_PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "scikit-learn")
RANGES: dict[str, tuple[float | None, float | None]] = {
    "kq_mmd2": (0.0, None), "kq_probe_acc": (0.0, 1.0), "attn_entropy": (0.0, None)}
DEFAULTS: dict[str, Any] = {
    "split": None,
    "num_examples": 200,
    "seed": None,
    "scales": [0.5, 1.0, 2.0],
    "probe_c": 1.0,
    "probe_max_iter": 1000,
    "qk_pattern": None,
    "per_head": True,
}


@dataclass(frozen=True)
class AlignmentSettings:
    split: str | None = None
    num_examples: int = 200
    seed: int | None = None
    scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    probe_c: float = 1.0
    probe_max_iter: int = 1000
    qk_pattern: str | None = None
    per_head: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlignmentSettings":
        """Checked settings; any bad key or value -> one-line UsageError."""
        unknown = sorted(set(d) - set(DEFAULTS))
        if unknown:
            raise UsageError(f"unknown alignment setting '{unknown[0]}'{did_you_mean(unknown[0], sorted(DEFAULTS))}; "
                             f"'alignment' takes: {', '.join(sorted(DEFAULTS))}")
        m = {**DEFAULTS, **d}
        if m["split"] is not None and (not isinstance(m["split"], str) or not m["split"]):
            raise UsageError(f"split must be a split name, not {m['split']!r}")
        if not _is_int(m["num_examples"]) or m["num_examples"] < 2:
            raise UsageError(f"num_examples must be an integer >= 2 (the probe needs two halves), "
                             f"not {m['num_examples']!r}")
        if m["seed"] is not None and not _is_int(m["seed"]):
            raise UsageError(f"seed must be an integer, not {m['seed']!r}")
        scales = m["scales"]
        if (not isinstance(scales, (list, tuple)) or not scales
                or not all(_is_number(s) and math.isfinite(s) and s > 0 for s in scales)):
            raise UsageError(f"scales must be a non-empty list of positive numbers, not {scales!r}")
        if not _is_number(m["probe_c"]) or not math.isfinite(m["probe_c"]) or m["probe_c"] <= 0:
            raise UsageError(f"probe_c must be a positive number, not {m['probe_c']!r}")
        if not _is_int(m["probe_max_iter"]) or m["probe_max_iter"] < 1:
            raise UsageError(f"probe_max_iter must be a positive integer, not {m['probe_max_iter']!r}")
        if m["qk_pattern"] is not None:
            if not isinstance(m["qk_pattern"], str):
                raise UsageError(f"qk_pattern must be a string 'QUERY,KEY' or 'fused=QKV', not {m['qk_pattern']!r}")
            parse_qk_pattern(m["qk_pattern"])
        if not isinstance(m["per_head"], bool):
            raise UsageError(f"per_head must be true or false, not {m['per_head']!r}")
        return cls(split=m["split"], num_examples=int(m["num_examples"]),
                   seed=None if m["seed"] is None else int(m["seed"]), scales=tuple(float(s) for s in scales),
                   probe_c=float(m["probe_c"]), probe_max_iter=int(m["probe_max_iter"]),
                   qk_pattern=m["qk_pattern"], per_head=m["per_head"])


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(settings: dict[str, Any], roles: dict[str, str]) -> None:
    """Spec-time checks (no model is loaded): values, and that the split exists."""
    st = AlignmentSettings.from_dict(settings)
    if st.split is not None and roles and st.split not in roles:
        raise UsageError(f"split: no split '{st.split}'{did_you_mean(st.split, sorted(roles))}")
    if st.split is not None and roles.get(st.split) == "train":
        raise UsageError(f"split: '{st.split}' is a train split; the alignment suite reads evaluation splits")


def _split(ctx: SuiteContext, wanted: str | None) -> str:
    if wanted:
        if wanted not in ctx.examples:
            known = sorted(ctx.examples)
            raise UsageError(f"alignment: no split '{wanted}'{did_you_mean(wanted, known)}; splits: {', '.join(known)}")
        return wanted
    tests = [s for s in ctx.splits_with_role("test") if s in ctx.examples]
    if tests:
        return tests[0]
    if "test" in ctx.examples:
        return "test"
    raise UsageError("alignment: the run has no test split; set split = \"<name>\"")


def sample(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the sampled examples in split order, probe-training flag per sampled example).

    One seeded permutation: its first min(k, n) entries are the sample, the first half of those
    (rounded down) trains the probe. Depends only on n, k and the seed, so every model gets the same ids.
    """
    perm = np.random.default_rng(seed).permutation(n)[:min(k, n)]
    train = np.zeros(n, bool)
    train[perm[:len(perm) // 2]] = True
    positions = np.sort(perm)
    return positions, train[positions]


def column_names(n_layers: int, n_heads: int) -> list[tuple[str, str, int | None, int | None]]:
    """(column, metric, layer, head): overall, then per layer, then per head, metric by metric."""
    cols = [(m, m, None, None) for m in METRICS]
    cols += [(f"{m}@L{l}", m, l, None) for m in METRICS for l in range(n_layers)]
    cols += [(f"{m}@L{l}H{h}", m, l, h) for m in METRICS for l in range(n_layers) for h in range(n_heads)]
    return cols


def value_columns(per_head: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-example columns from {metric: [n, layers, heads]}: a layer's value is the mean over its
    heads, the overall value the mean over layers and heads (NaN if any of them is NaN)."""
    n, n_layers, n_heads = per_head[METRICS[0]].shape
    out: dict[str, np.ndarray] = {}
    for column, metric, layer, head in column_names(n_layers, n_heads):
        arr = per_head[metric]
        if layer is None:
            out[column] = arr.reshape(n, -1).mean(1)
        elif head is None:
            out[column] = arr[:, layer].mean(1)
        else:
            out[column] = arr[:, layer, head].copy()
    return out


def build_records(columns: dict[str, np.ndarray], model: str, split: str, rel_path: str, n_layers: int,
                  n_heads: int, per_head: bool = True) -> list[Record]:
    """One per_example record per column: value = mean of the finite values, n = their count."""
    records = []
    for column, metric, layer, head in column_names(n_layers, n_heads):
        if head is not None and not per_head:
            continue
        values = np.asarray(columns[column], np.float64)
        finite = values[np.isfinite(values)]
        extra: dict[str, Any] = {"values": rel_path, "column": column}
        if layer is not None:
            extra["layer"] = layer
        if head is not None:
            extra["head"] = head
        extra.update(n_layers=n_layers, n_heads=n_heads)
        records.append(Record(SUITE, split, model, column, float(finite.mean()) if len(finite) else None,
                              int(len(finite)), None, RANGES[metric], "per_example", None, extra))
    return records


# ---------- the cache --------------------------------------------------------------------------

def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def cache_payload(info: ModelInfo, weights_sha256: str, st: AlignmentSettings, qk_pattern: str | None, seed: int,
                  max_length: int, ids: list[str], train: np.ndarray, texts: list, pairs: list | None) -> dict:
    """Everything the stored numbers depend on; its sha256 is the cache key."""
    folder = Path(info.path)
    tok_files = [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]
    config = folder / "config.json"
    return {
        "version": VERSION, "weights_sha256": weights_sha256,
        "config_sha256": sha256_files([config]) if config.is_file() else None,
        "tokenizer_sha256": sha256_files(tok_files) if tok_files else None,
        "settings": {"scales": list(st.scales), "probe_c": st.probe_c, "probe_max_iter": st.probe_max_iter,
                     "qk_pattern": qk_pattern, "seed": seed, "max_length": max_length},
        "runtime": runtime_versions(),
        "ids_sha256": _sha256_json(ids),
        "train_ids_sha256": _sha256_json([i for i, t in zip(ids, train) if t]),
        "texts_sha256": _sha256_json([texts, pairs]),
    }


def runtime_versions() -> dict[str, str | None]:
    """Versions of the libraries that compute the numbers (package metadata, no import): an upgrade
    can change tokenization, kernels or the probe's solver, so it must not reuse stored values."""
    return package_versions(RUNTIME_PACKAGES)


def write_values(path: Path, ids: list[str], columns: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Atomic parquet write: `id`, then one float64 column per metric name, `meta` in the schema."""
    write_float_table(path, ids, columns, meta)


def read_values(path: Path) -> tuple[list[str], dict[str, np.ndarray], dict[str, Any]] | None:
    """(ids, columns, metadata) of a stored values file; None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        table, meta = read_table(path)
        ids = [str(i) for i in table.column("id").to_pylist()]
        columns = {name: as_numpy(table.column(name).combine_chunks()).astype(np.float64)
                   for name in table.column_names if name != "id"}
    except Exception:  # noqa: BLE001 - a corrupt cache is recomputed, never trusted
        return None
    return ids, columns, meta


def _cached(path: Path, key: str, ids: list[str]):
    hit = read_values(path)
    if hit is None:
        return None
    stored_ids, columns, meta = hit
    if meta.get("key") != key or stored_ids != ids:
        return None
    n_layers, n_heads = meta.get("n_layers"), meta.get("n_heads")
    if not _is_int(n_layers) or not _is_int(n_heads):
        return None
    if any(c not in columns for c, *_ in column_names(n_layers, n_heads)):
        return None
    return columns, n_layers, n_heads


# ---------- measuring one model ------------------------------------------------------------------

def load(info: ModelInfo, allow_pickle: bool, trust_remote_code: bool):
    """Model + tokenizer in eval mode, safetensors unless the run allowed pickle (a seam for tests)."""
    _, pickled = weight_files(Path(info.path), allow_pickle)
    model, tokenizer = load_model(Path(info.path), use_safetensors=not pickled, trust_remote_code=trust_remote_code)
    return diagnosis_model(model), tokenizer  # a multiple-choice model's encoder: its head wants [B, C, L]


def measure(model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, train: np.ndarray, *,
            qk_pattern: str | None, max_length: int, batch_size: int, scales: tuple[float, ...], probe_c: float,
            probe_max_iter: int, progress: bool = False, description: str = "alignment") -> dict[str, np.ndarray]:
    """{metric: [n, layers, heads]} for one model: eval-mode forwards with the q/k capture attached,
    batches sorted by length and padded to their own longest example."""
    import torch

    n = len(texts)
    padding = fit_tokenizer(tokenizer, model)  # the prediction path's rule: same pad id and side
    enc = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                    max_length=max_length, padding=False)
    # a tokenizer may emit segment ids a model does not take (a BERT tokenizer next to a DistilBERT)
    names = model_inputs(model, enc)
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    pad = {"input_ids": padding.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
    left = padding.left
    device = next(model.parameters()).device
    model.eval()
    mmd = ent = None
    k_tokens: list[list[np.ndarray]] = []
    q_tokens: list[list[np.ndarray]] = []
    token_example: list[np.ndarray] = []
    with _attach(model, qk_pattern) as capture, torch.inference_mode(), _progress(progress, description, n) as advance:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            width = int(lengths[idx].max())
            batch = padded_batch(enc, names, idx, lengths, pad, left, device)
            mask = torch.from_numpy(np.arange(width)[None, :] < lengths[idx][:, None])
            if left:
                mask = mask.flip(1)
            capture.clear()
            model(**batch)
            layers = capture.layers()
            capture.clear()
            if not layers:
                raise ArtifactError("the q/k capture recorded no attention layer during the forward pass; "
                                    "check qk_pattern")
            if mmd is None:
                heads = layers[0][0].shape[1]
                mmd = np.full((n, len(layers), heads), np.nan)
                ent = np.full((n, len(layers), heads), np.nan)
                k_tokens = [[] for _ in layers]
                q_tokens = [[] for _ in layers]
            elif len(layers) != mmd.shape[1]:
                raise ArtifactError(f"the model ran {len(layers)} attention layers on one batch and "
                                    f"{mmd.shape[1]} on another")
            for layer, (q, k) in enumerate(layers):
                mmd[idx, layer] = diagnostics.mmd2(k, q, mask, scales)
                ent[idx, layer] = diagnostics.attention_entropy(q, k, mask)
                kt, rows = diagnostics.gather_tokens(k, mask)
                qt, _ = diagnostics.gather_tokens(q, mask)
                k_tokens[layer].append(kt.astype(np.float32, copy=False))
                q_tokens[layer].append(qt.astype(np.float32, copy=False))
                if layer == 0:
                    token_example.append(idx[rows])
            advance(len(idx))
    example = np.concatenate(token_example)
    probe = np.stack([diagnostics.probe_accuracy_tokens(np.concatenate(k_tokens[layer]),
                                                        np.concatenate(q_tokens[layer]), example, train,
                                                        probe_c, probe_max_iter)
                      for layer in range(mmd.shape[1])], axis=1)
    return {"kq_mmd2": mmd, "kq_probe_acc": probe, "attn_entropy": ent}


def _attach(model: Any, qk_pattern: str | None):
    """The q/k capture; an architecture outside the registry is told about this suite's setting."""
    try:
        return attach(model, qk_pattern)
    except UsageError as err:
        raise UsageError(err.message.replace(QK_PATTERN_OPTION,
                                             'the setting qk_pattern = "QUERY,KEY" (or "fused=QKV")')) from None


def _card_qk_pattern(info: ModelInfo) -> str | None:
    hp = (info.card or {}).get("hyperparameters") if isinstance(info.card, dict) else None
    value = hp.get("qk_pattern") if isinstance(hp, dict) else None
    return value if isinstance(value, str) and value else None


def model_values(info: ModelInfo, examples: Any, split: str, st: AlignmentSettings, seed: int, run_dir: Path,
                 run: dict[str, Any]) -> tuple[dict[str, np.ndarray], int, int, str]:
    """Per-example columns for one model: from run_dir/alignment/<model>/<split>.parquet when its key
    matches, else measured (the model is loaded only then) and stored."""
    positions, train = sample(len(examples.ids), st.num_examples, seed)
    ids = [str(examples.ids[i]) for i in positions]
    texts = [examples.texts[i] for i in positions]
    pairs = None if examples.text_pairs is None else [examples.text_pairs[i] for i in positions]
    qk_pattern = st.qk_pattern or _card_qk_pattern(info)
    max_length, batch_size = int(run.get("max_length", 128)), int(run.get("batch_size", 32))
    weights = info.weights_sha256 or sha256_files(weight_files(Path(info.path), bool(run.get("allow_pickle")))[0])
    payload = cache_payload(info, weights, st, qk_pattern, seed, max_length, ids, train, texts, pairs)
    key = _sha256_json(payload)
    rel = f"{VALUES_DIR}/{info.name}/{split}.parquet"
    path = Path(run_dir) / rel
    hit = _cached(path, key, ids)
    if hit is not None:
        return hit[0], hit[1], hit[2], rel
    path.parent.mkdir(parents=True, exist_ok=True)  # fail on an unwritable run folder before any work
    model, tokenizer = load(info, bool(run.get("allow_pickle")), bool(run.get("trust_remote_code")))
    per_head = measure(model, tokenizer, texts, pairs, train, qk_pattern=qk_pattern, max_length=max_length,
                       batch_size=batch_size, scales=st.scales, probe_c=st.probe_c, probe_max_iter=st.probe_max_iter,
                       progress=bool(run.get("progress")), description=f"alignment {info.name}/{split}")
    _, n_layers, n_heads = per_head["kq_mmd2"].shape
    columns = value_columns(per_head)
    write_values(path, ids, columns, {"key": key, "payload": payload, "model": info.name, "split": split,
                                      "n_layers": n_layers, "n_heads": n_heads,
                                      "settings": asdict(st) | {"scales": list(st.scales)}})
    return columns, n_layers, n_heads, rel


@register_suite(SUITE, description="Key–query alignment per layer and head: MMD², linear-probe accuracy, "
                "attention entropy (any model in the q/k registry)",
                defaults=DEFAULTS, needs_models=True, validate=validate)
def alignment(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    st = AlignmentSettings.from_dict(settings)
    split = _split(ctx, st.split)
    seed = ctx.seed if st.seed is None else st.seed
    run = ctx.settings or {}
    out = SuiteOutput()
    for name, info in ctx.models.items():
        columns, n_layers, n_heads, rel = model_values(info, ctx.examples[split], split, st, seed, ctx.run_dir, run)
        out.records += build_records(columns, name, split, rel, n_layers, n_heads, st.per_head)
    return out
