"""Fine-tune the baseline and its aligned twin identically; the only difference is the regularizer.

Both twins start from the same loaded weights (one load, one deep copy: same classifier head), see
the same batches in the same order (a seeded generator per model), use the same AdamW, linear
warm-up/decay, clipping, accumulation and number of steps, and the same global RNG stream for
dropout (the auxiliary nets draw from their own generators). Each finished model folder is written
to a temporary folder next to its target and renamed into place, so an interrupted run never leaves
a half-written checkpoint, and a re-run skips what is finished.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from aligneval import choices
from aligneval.align.lora import LoraSettings, for_saving
from aligneval.choices import is_choices
from aligneval.data import DataSource, Examples, load_examples, require_classes
from aligneval.errors import ArtifactError, ResourceError, UsageError
from aligneval.padding import padding_card
from aligneval.quiet import transformers_bars_off

CARD_NAME = "alignment.json"
LOG_NAME = "train_log.jsonl"
CARD_FORMAT = "aligneval.alignment/1"
ROLES = ("baseline", "aligned")
# The auxiliary players' defaults, chosen by measurement (docs/align.md): their learning rate is
# AUX_LR_RATIO × the model's unless given (two time scales: the discriminator must outpace the keys)
AUX_LR_RATIO = 30.0
# aux_steps None: the variant's own default (`Aligner.aux_steps`: 5 for gan, 3 for the ct family)
AUX_DEFAULTS = {"aux_lr": None, "aux_steps": None}
VERSIONED_PACKAGES = ("aligneval", "torch", "transformers", "tokenizers", "numpy", "datasets")


@dataclass
class SeedRun:
    """The model folders of one seed: the baseline and one twin per λ (`twins`, in the order given);
    `aligned` is the first twin. `trained` lists the folders trained in this call."""

    seed: int
    baseline: Path
    twins: dict[float, Path]
    trained: list[str] = field(default_factory=list)

    @property
    def aligned(self) -> Path:
        return next(iter(self.twins.values()))


@dataclass
class AlignResult:
    out: Path
    runs: list[SeedRun]

    @property
    def baseline(self) -> Path:
        return self.runs[0].baseline

    @property
    def aligned(self) -> Path:
        return self.runs[0].aligned


# ----------------------------------------------------------------------------- entry point


def align_pair(
    model: str,
    train: str | os.PathLike | DataSource,
    out: str | os.PathLike,
    *,
    dev: str | os.PathLike | DataSource | None = None,
    variant: str = "gan",
    lam: float | Sequence[float] = 0.01,
    seeds: tuple[int, ...] | list[int] = (13,),
    epochs: int = 1,
    max_steps: int | None = None,
    batch_size: int = 16,
    grad_accum: int = 1,
    max_length: int = 128,
    lr: float = 3e-5,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.0,
    clip: float = 1.0,
    freeze_layers: int = 0,
    qk_pattern: str | None = None,
    variant_options: dict[str, Any] | None = None,
    aux_lr: float | None = None,
    aux_steps: int | None = AUX_DEFAULTS["aux_steps"],
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
    mixed_precision: str = "no",
    task: str | None = None,
    lora: str | dict | LoraSettings | None = None,
    **data_kwargs: Any,
) -> AlignResult:
    """Fine-tune `model` (hub id or local folder) and its aligned twin(s) on `train`; see module doc.

    `lam` is one λ or several (a dose–response grid): each seed trains the baseline once and one
    twin per λ, all from the same weights, data order and seed. Writes `out/{baseline,aligned}/`
    (one seed, one λ), `out/aligned-lam<λ>/` per λ of a grid, and `out/seed-<s>/...` for several
    seeds; each a `save_pretrained` folder with its tokenizer, `alignment.json` and `train_log.jsonl`.
    `data_kwargs` (text_column, text_pair_column, label_column, ...) configure path inputs.
    Runs on accelerate: the device is picked automatically (`device`), `mixed_precision` is
    no|fp16|bf16, and under `accelerate launch` each process trains on its shard of the same
    seeded batch order (docs/scaling.md); only the main process writes.
    `task` is sequence-classification (default) or multiple-choice (aligneval.tasks, aligneval.choices);
    `lora` ("r=8,alpha=16" or LoraSettings) trains both twins as LoRA adapters, saved merged (align/lora.py).
    """
    from aligneval import distributed
    from aligneval.align.lora import adapt, card as lora_card, check_compatible, parse_lora
    from aligneval.align.losses import VARIANTS
    from aligneval.tasks import DEFAULT_TASK, get_task

    VARIANTS.get(variant)  # unknown variant -> "did you mean" before any work
    seeds = _check_seeds(seeds)
    lams = check_lambdas(lam)
    hp = dict(
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        max_length=max_length, lr=lr, warmup_ratio=warmup_ratio, weight_decay=weight_decay, clip=clip,
        freeze_layers=freeze_layers, qk_pattern=qk_pattern, optimizer="AdamW(eps=1e-8)",
        schedule="linear warm-up then linear decay",
        processes=distributed.state(device).world_size, mixed_precision=mixed_precision,
    )
    task = get_task(task).name
    lora = parse_lora(lora)
    check_compatible(lora, freeze_layers)
    if task != DEFAULT_TASK:
        hp["task"] = task
    if lora is not None:
        hp["lora"] = lora.to_dict()
    _check_numbers(hp)
    options = dict(variant_options or {})
    _check_options(variant, options)
    aux = _check_aux(AUX_LR_RATIO * lr if aux_lr is None and isinstance(lr, (int, float)) else aux_lr, aux_steps,
                     variant, options)
    accelerator = distributed.make_accelerator(device, mixed_precision)  # bad device/precision: exit 2 now

    train_src = _source(train, data_kwargs, task)
    dev_src = None if dev is None else _source(dev, data_kwargs, task)
    train_ex = load_examples(train_src)
    _check_task(train_ex, task)
    require_classes(train_ex)
    dev_ex = load_examples(dev_src, label_names=train_ex.label_names) if dev_src is not None else None

    common = dict(
        base_model=_model_ref(model), hyperparameters=hp, label_names=train_ex.label_names,
        train=train_ex.fingerprint, dev=None if dev_ex is None else dev_ex.fingerprint,
    )
    keys = {"baseline": _run_key(dict(common, role="baseline"))}
    for value in lams:
        keys[value] = _run_key(dict(common, variant=variant, lam=value, variant_options=options, aux=aux))
    out = Path(out)
    plan = _plan(out, seeds, lams, keys, overwrite)
    result = AlignResult(out, [SeedRun(seed, folders["baseline"], {v: folders[v] for v in lams})
                               for seed, folders, _ in plan])
    todo = [(seed, folders, roles) for seed, folders, roles in plan if roles]
    if not todo:
        return result

    tokenizer, loaded = _load(model, train_ex.label_names, trust_remote_code, allow_pickle, seed=todo[0][0], task=task)
    _check_architecture(loaded, qk_pattern, freeze_layers)
    full_size = sum(p.numel() for p in loaded.parameters())
    loaded = adapt(loaded, lora, todo[0][0], qk_pattern)  # LoRA: one adapter init, copied into every twin
    features = _tokenize(tokenizer, train_ex, max_length)
    dev_features = _tokenize(tokenizer, dev_ex, max_length) if dev_ex is not None else None
    data_card = {"train": _data_card(train_ex), "dev": None if dev_ex is None else _data_card(dev_ex)}

    by_seed = {r.seed: r for r in result.runs}
    for seed, folders, roles in todo:
        if loaded is None:
            _, loaded = _load(model, train_ex.label_names, trust_remote_code, allow_pickle, seed=seed, task=task)
            loaded = adapt(loaded, lora, seed, qk_pattern)
        for i, role in enumerate(roles):
            # every role starts from the same weights (same head initialisation); the last takes the original
            twin = loaded if i == len(roles) - 1 else copy.deepcopy(loaded)
            aligned = role != "baseline"
            card = dict(
                format=CARD_FORMAT, role="aligned" if aligned else "baseline",
                variant=variant if aligned else "none",
                **{"lambda": float(role) if aligned else 0.0},
                twin={"variant": variant, "lambda": float(role) if aligned else list(lams)[0],
                      "lambdas": list(lams)},
                variant_options=options if aligned else {},
                aux=aux if aligned else None,
                seed=seed, base_model=common["base_model"], hyperparameters=hp, data=data_card,
                label_names=train_ex.label_names, versions=_versions(), run_key=keys[role], task=task,
                padding=features["padding"], lora=None if lora is None else lora_card(lora, loaded, full_size),
            )
            _train_and_save(
                twin, tokenizer, features, dev_features, folders[role], card,
                variant=variant if aligned else None, lam=float(role) if aligned else 0.0, options=options,
                aux=aux, seed=seed, hp=hp, progress=progress, overwrite=overwrite, accelerator=accelerator,
            )
            del twin
            by_seed[seed].trained.append(folders[role].name)
        loaded = None
    return result


def twin_folder_name(lam: float, grid: bool) -> str:
    """`aligned` for a single λ; `aligned-lam<λ>` (λ in %g form) for each twin of a grid."""
    return f"aligned-lam{format(lam, 'g')}" if grid else "aligned"


# ----------------------------------------------------------------------------- validation and planning


def _check_seeds(seeds) -> tuple[int, ...]:
    try:
        values = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise UsageError(f"seeds must be integers, not {seeds!r}") from None
    if not values:
        raise UsageError("give at least one seed")
    if len(set(values)) != len(values):
        raise UsageError(f"seeds repeat: {list(values)}")
    return values


def check_lambdas(lam) -> tuple[float, ...]:
    """One λ or several ("0.01,0.1,1", a number or a sequence) -> distinct finite values >= 0."""
    if isinstance(lam, str):
        parts = [p.strip() for p in lam.split(",")]
    elif isinstance(lam, (int, float)):
        parts = [lam]
    else:
        parts = list(lam)
    values = []
    for part in parts:
        try:
            value = float(part)
        except (TypeError, ValueError):
            raise UsageError(f"--lambda takes numbers like 0.01,0.1,1, not '{lam}'") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--lambda must be finite and >= 0, not {part}")
        values.append(value)
    if not values:
        raise UsageError("--lambda: give at least one value")
    if len(set(values)) != len(values):
        raise UsageError(f"--lambda values repeat: {', '.join(format(v, 'g') for v in values)}")
    return tuple(values)


def _check_aux(aux_lr: float, aux_steps: int | None, variant: str | None = None, options: dict | None = None) -> dict:
    """The auxiliary players' settings for the card; aux_steps None takes the variant's default."""
    if not isinstance(aux_lr, (int, float)) or not math.isfinite(aux_lr) or aux_lr <= 0:
        raise UsageError(f"--aux-lr must be positive, not {aux_lr}")
    if aux_steps is None and variant is not None:
        aux_steps = default_aux_steps(variant, options or {})
    if aux_steps is not None and (not isinstance(aux_steps, int) or isinstance(aux_steps, bool) or aux_steps < 1):
        raise UsageError(f"--aux-steps must be a whole number >= 1, not {aux_steps}")
    return {"aux_lr": float(aux_lr), "aux_steps": aux_steps, "aux_optimizer": "Adam(betas=(0.5, 0.999))",
            "aux_schedule": "constant"}


def default_aux_steps(variant: str, options: dict) -> int:
    """The variant's own number of auxiliary updates per model step (`Aligner.aux_steps`)."""
    import torch

    from aligneval.align.losses import build_aligner

    with torch.random.fork_rng(devices=[]):
        return int(build_aligner(variant, 1, 4, **options).aux_steps)


def _check_options(variant: str, options: dict) -> None:
    """Unknown variant options fail before any data or model is read."""
    import torch

    from aligneval.align.losses import build_aligner

    with torch.random.fork_rng(devices=[]):
        build_aligner(variant, 1, 4, **options)


def _check_numbers(hp: dict) -> None:
    positive = ("epochs", "batch_size", "grad_accum", "max_length", "lr")
    for name in positive:
        if not hp[name] or hp[name] <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, not {hp[name]}")
    if hp["max_steps"] is not None and hp["max_steps"] <= 0:
        raise UsageError(f"--max-steps must be positive, not {hp['max_steps']}")
    if not 0.0 <= hp["warmup_ratio"] < 1.0:
        raise UsageError(f"--warmup-ratio must lie in [0, 1), not {hp['warmup_ratio']}")
    for name in ("weight_decay", "clip", "freeze_layers"):
        if hp[name] < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, not {hp[name]}")


def _source(data, data_kwargs: dict, task: str | None = None) -> DataSource:
    from aligneval.tasks import data_columns

    if isinstance(data, DataSource):
        given = {k: v for k, v in data_kwargs.items() if v is not None}
        return replace(data, **given) if given else data
    try:  # a path reads the task's default columns (multiple choice: SWAG's) unless told otherwise
        return DataSource(path=str(data), **data_columns(task, data_kwargs))
    except TypeError as exc:
        raise UsageError(f"unknown data option: {exc}") from None


def _check_task(examples: Examples, task: str) -> None:
    """A DataSource given as an object carries its own columns: they must fit the task."""
    from aligneval.tasks import MULTIPLE_CHOICE

    if is_choices(examples) != (task == MULTIPLE_CHOICE):
        raise UsageError(f"{examples.source}: the data is {'' if is_choices(examples) else 'not '}multiple choice "
                         f"but the task is {task}; name the task with --task (and choice columns for multiple choice)")


def _model_ref(model: str) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def _run_key(run: dict) -> str:
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def _targets(out: Path, seeds: tuple[int, ...]) -> list[tuple[int, Path]]:
    if len(seeds) == 1:
        return [(seeds[0], out)]
    return [(s, out / f"seed-{s}") for s in seeds]


def _read_card(folder: Path) -> dict | None:
    try:
        return json.loads((folder / CARD_NAME).read_text())
    except (OSError, ValueError):
        return None


def _plan(out: Path, seeds: tuple[int, ...], lams: tuple[float, ...], keys: dict, overwrite: bool):
    """[(seed, {role: folder}, roles_to_train)], role "baseline" or a λ; refuses an out folder of
    another run. A finished folder of the same run is kept, so a re-run resumes and a grid can grow."""
    from aligneval.paths import check_output_dir

    check_output_dir(out, "--out")
    plan = []
    for seed, folder in _targets(out, seeds):
        folders = {"baseline": folder / "baseline"}
        folders.update({v: folder / twin_folder_name(v, len(lams) > 1) for v in lams})
        roles = []
        for role, target in folders.items():
            if not target.exists():
                roles.append(role)
                continue
            card = _read_card(target)
            if card is not None and card.get("run_key") == keys[role] and card.get("seed") == seed:
                continue  # finished: keep it
            if not overwrite:
                what = "a different run" if card is not None else "files that are not a finished aligneval model"
                raise UsageError(f"{target} holds {what}; pass --overwrite to replace it or choose another --out")
            roles.append(role)
        plan.append((seed, folders, roles))
    return plan


# ----------------------------------------------------------------------------- loading


def _load(model: str, label_names: list[str], trust_remote_code: bool, allow_pickle: bool, seed: int,
          task: str | None = None):
    """(tokenizer, model) with safetensors weights; the classifier head is initialised under `seed`.
    The tokenizer and config follow aligneval.padding's rule (pad token, side, model inputs)."""
    import torch
    import transformers
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    from aligneval.tasks import auto_model_class

    from aligneval.padding import fit_tokenizer

    path = Path(model).expanduser()
    use_safetensors: bool | None = True
    if path.exists():
        if not path.is_dir():
            raise ArtifactError(f"--model {model} is a file; give a model folder or a hub id")
        from aligneval.versions import check_tokenizer_not_newer

        check_tokenizer_not_newer(path)
        has_safe = any(path.glob("*.safetensors"))
        if has_safe:
            from aligneval.predict import check_safetensors

            check_safetensors(path, sorted(path.glob("*.safetensors")))  # a truncated file fails here, named
        has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt"))
        if not has_safe:
            if not has_pickle:
                raise ArtifactError(f"{path} holds no model weights (*.safetensors)")
            if not allow_pickle:  # the same code as `run` for the same folder: an unusable artifact
                raise ArtifactError(
                    f"{path} holds only pickle weights (*.bin), which can run code when loaded; "
                    "convert them to safetensors or pass --allow-pickle if you trust the folder"
                )
            use_safetensors = None
    elif model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not an org/name hub id
        raise ArtifactError(f"model folder not found: {model}")
    elif allow_pickle:
        use_safetensors = None
    id2label = {i: name for i, name in enumerate(label_names)}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        torch.manual_seed(seed)
        with transformers_bars_off():
            loaded = auto_model_class(task).from_pretrained(
                model, num_labels=len(label_names), id2label=id2label,
                label2id={name: i for i, name in id2label.items()}, ignore_mismatched_sizes=True,
                use_safetensors=use_safetensors, trust_remote_code=trust_remote_code,
            )
    except (OSError, ValueError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = ArtifactError if path.exists() else ResourceError
        raise error(f"cannot load model '{model}': {first}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    fit_tokenizer(tokenizer, loaded)  # the padding rule (pad = eos if none, right side): saved with each twin
    return tokenizer, loaded


def _check_architecture(model, qk_pattern: str | None, freeze_layers: int) -> None:
    """Fail before training when the q/k sources cannot be found, the head counts do not group, or
    the freeze is impossible."""
    from aligneval.align.hooks import arch_spec, find_qk_modules, freeze_targets, head_counts

    spec = arch_spec(model.config, qk_pattern)
    find_qk_modules(model, spec)
    head_counts(model.config, spec)
    freeze_targets(model, freeze_layers, qk_pattern)


def _tokenize(tokenizer, examples: Examples, max_length: int) -> dict:
    """Unpadded ids (and segment ids where the tokenizer emits them), with the padding to apply:
    the tokenizer's pad id and side as `_load` settled them (aligneval.padding)."""
    if is_choices(examples):  # multiple choice: C pairs per example (aligneval.choices)
        return {**choices.tokenize(tokenizer, examples, max_length), "padding": padding_card(tokenizer)}
    enc = tokenizer(
        examples.texts, examples.text_pairs, truncation=True, max_length=max_length, return_attention_mask=False
    )
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {"columns": {k: enc[k] for k in keys}, "labels": examples.labels.tolist(),
            "lengths": [len(ids) for ids in enc["input_ids"]], "pad_id": pad_id, "padding": padding_card(tokenizer)}


def _collate(features: dict, index: list[int]):
    """Dynamic padding to the longest example of the batch, on the side `_tokenize` recorded (right
    for every registered architecture); the attention mask marks the real tokens either way."""
    import torch

    if "choices" in features:  # multiple choice: [B, C, L] (aligneval.choices)
        return choices.collate(features, index)

    length = max(features["lengths"][i] for i in index)
    left = features.get("padding", {}).get("side") == "left"
    batch = {}
    for name, column in features["columns"].items():
        fill = features["pad_id"] if name == "input_ids" else 0
        tensor = torch.full((len(index), length), fill, dtype=torch.long)
        for row, i in enumerate(index):
            values = torch.tensor(column[i], dtype=torch.long)
            if left:
                tensor[row, length - len(values):] = values
            else:
                tensor[row, : len(values)] = values
        batch[name] = tensor
    lengths = torch.tensor([features["lengths"][i] for i in index])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    batch["attention_mask"] = (mask.flip(1) if left else mask).long()
    labels = torch.tensor([features["labels"][i] for i in index], dtype=torch.long)
    return batch, labels


def epoch_batches(lengths: list[int], batch_size: int, generator) -> list[list[int]]:
    """Shuffle, sort by length within buckets of 50 batches (less padding), shuffle the batches."""
    import torch

    order = torch.randperm(len(lengths), generator=generator).tolist()
    bucket = batch_size * 50
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


# ----------------------------------------------------------------------------- training


def _optimizer(model, hp: dict):
    """AdamW over the model's trainable parameters only; the auxiliary networks have their own."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": hp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp["lr"], eps=1e-8)


def _aux_optimizer(aligner, aux: dict):
    """The auxiliary players' own Adam at their own constant rate (GAN practice: β1 = 0.5), so the
    discriminator or critic keeps up with the encoder whatever the task's learning rate and schedule."""
    import torch

    params = [p for p in aligner.parameters()] if aligner is not None else []
    if not params:
        return None, []
    return torch.optim.Adam(params, lr=aux["aux_lr"], betas=(0.5, 0.999), eps=1e-8), params


@contextlib.contextmanager
def _held_fixed(params):
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


def _evaluate(model, features: dict, batch_size: int) -> float:
    import torch

    order = sorted(range(len(features["lengths"])), key=lambda i: features["lengths"][i])
    correct = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size * 2):
            batch, labels = _collate(features, order[start : start + batch_size * 2])
            device = next(model.parameters()).device
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            correct += int((logits.argmax(-1).cpu() == labels).sum())
    model.train(was_training)
    return correct / max(1, len(order))


def _build_aligner(model, capture, batch: dict, variant: str, options: dict, seed: int):
    """Probe one eval-mode forward (no RNG use) for the layer count and head width, then build the
    aligner under a forked RNG so the global stream stays the baseline's."""
    import torch

    from aligneval.align.losses import build_aligner

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
    aligner.seed(seed + 2)
    return aligner.to(device).train(), len(layers)


def total_layers(model, regularized: int) -> int:
    """The model's attention-layer count, frozen ones included: λ is divided by it, so each
    regularized layer weighs λ/L whatever --freeze-layers is."""
    value = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None)
    return max(int(value), regularized) if isinstance(value, int) and value > 0 else regularized


def _train_and_save(model, tokenizer, features, dev_features, target: Path, card: dict, *, variant, lam,
                    options, aux, seed, hp, progress, overwrite, accelerator) -> None:
    """Train one twin into a temporary folder next to `target`, then rename it into place. Under
    several processes only the main one writes; the others wait until the folder is in place."""
    main = accelerator.is_main_process
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if main:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    try:
        label = f"seed {seed} {target.name}"
        stats = _train(model, features, dev_features, tmp / LOG_NAME if main else None, variant=variant, lam=lam,
                       options=options, seed=seed, hp=hp, progress=progress and main, label=label, aux=aux,
                       accelerator=accelerator)
        if main:
            card.update(stats)
            card["created"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            with transformers_bars_off():  # transformers 5 draws "Writing model shards"
                for_saving(accelerator.unwrap_model(model)).save_pretrained(tmp, safe_serialization=True)  # LoRA: merged
            tokenizer.save_pretrained(tmp)
            (tmp / CARD_NAME).write_text(json.dumps(card, indent=2, default=str) + "\n")
            if target.exists():
                if not overwrite:
                    raise UsageError(f"{target} appeared while training; re-run to resume")
                shutil.rmtree(target)
            os.replace(tmp, target)
    finally:
        if main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()


def _train(model, features, dev_features, log_path: Path | None, *, variant, lam, options, seed, hp, progress, label,
           aux=None, accelerator=None):
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    from aligneval import distributed
    from aligneval.align.hooks import freeze_bottom

    start_time = time.perf_counter()
    if accelerator is None:
        accelerator = distributed.make_accelerator()
    rt = distributed.state()
    device = accelerator.device
    model.to(device)
    freeze_bottom(model, hp["freeze_layers"], hp["qk_pattern"])  # before DDP: it registers what trains
    model.train()
    game = None
    if variant is not None:
        probe_batch, _ = _collate(features, [0])
        aux = dict(AUX_DEFAULTS, **(aux or {}))
        if aux["aux_lr"] is None:
            aux["aux_lr"] = AUX_LR_RATIO * hp["lr"]
        game = build_game(model, variant, lam, options, aux, seed, probe_batch, hp["qk_pattern"], hp["clip"])
        if rt.distributed:  # every process's auxiliary players take the same (averaged) update
            game.reduce = lambda grads: [accelerator.reduce(g, "mean") for g in grads]
    n_batches = math.ceil(len(features["lengths"]) / hp["batch_size"])
    # each process takes every W-th batch of the one seeded order (distributed.epoch_shard)
    updates_per_epoch = math.ceil((n_batches - n_batches % rt.world_size) // rt.world_size / hp["grad_accum"])
    total = hp["max_steps"] or hp["epochs"] * updates_per_epoch
    optimizer = _optimizer(model, hp)
    # the scheduler is not prepared: accelerate would step it once per process per update
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(hp["warmup_ratio"] * total), total)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ddp_model, optimizer = accelerator.prepare(model, optimizer)

    torch.manual_seed(seed + rt.rank)  # the dropout stream: identical for both twins (per process)
    order_gen = torch.Generator().manual_seed(seed)  # the data order (CPU by design): identical for both twins
    step, epoch, history, dev_history = 0, 0, [], []
    bar = _progress_bar(progress, label, total)
    sink = open(log_path, "w") if log_path is not None else contextlib.nullcontext(None)
    with sink as log, (bar if bar is not None else contextlib.nullcontext()):
        task_id = bar.add_task(label, total=total) if bar is not None else None
        while step < total:
            epoch += 1
            batches = epoch_batches(features["lengths"], hp["batch_size"], order_gen)
            mine = distributed.epoch_shard(batches, rt.rank, rt.world_size)
            groups = [mine[i : i + hp["grad_accum"]] for i in range(0, len(mine), hp["grad_accum"])]
            for group in groups:
                sums = _StepSums()
                for part, index in enumerate(group):
                    batch, labels = _collate(features, index)  # built on the CPU, then moved
                    batch, labels = {k: v.to(device) for k, v in batch.items()}, labels.to(device)
                    # gradients are averaged across processes only on the step's last micro-batch
                    sync = contextlib.nullcontext() if part == len(group) - 1 else accelerator.no_sync(ddp_model)
                    with sync:
                        with accelerator.autocast():
                            logits = ddp_model(**batch).logits
                            task = F.cross_entropy(logits.float(), labels)
                            # multiple choice runs the encoder on B·C sequences: the mask as [B·C, L]
                            mask = batch["attention_mask"].flatten(0, -2)
                            loss = task if game is None else task + game.alignment_term(mask, sums)
                        accelerator.backward(loss / len(group))
                    sums.task += float(task.detach())
                if hp["clip"]:
                    accelerator.clip_grad_norm_(trainable, hp["clip"])
                lr_now = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                record = {"step": step, "epoch": epoch, **sums.record(len(group), game and game.aligner),
                          "lr": lr_now}
                history.append(record)
                end_of_epoch = group is groups[-1] or step == total
                if end_of_epoch and dev_features is not None:
                    if game is not None:
                        game.capture.enabled = False
                    record["dev_accuracy"] = _evaluate(model, dev_features, hp["batch_size"])  # the plain module:
                    # no collective inside, so every process can do it alone
                    if game is not None:
                        game.capture.enabled = True
                    dev_history.append({"epoch": epoch, "step": step, "accuracy": record["dev_accuracy"]})
                    if bar is not None:
                        bar.console.print(f"{label} epoch {epoch}: dev accuracy {record['dev_accuracy']:.4f}")
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if bar is not None:
                    bar.update(task_id, advance=1, description=_bar_text(label, record))
                if step == total:
                    break
    if game is not None:
        game.capture.remove()
    for p in model.parameters():
        p.requires_grad_(True)  # the saved folder carries no training-time freeze
    model.eval()
    return {"steps": step, "epochs_run": epoch, "final": _final(history, dev_history, game and game.aligner),
            "dev_history": dev_history, "wall_time_s": round(time.perf_counter() - start_time, 3)}


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

    def alignment_term(self, mask, sums: "_StepSums | None" = None):
        """(λ/L) · Σ_l encoder_loss_l on the keys and queries captured in the forward just run,
        after `aux_steps` updates of the auxiliary networks on the same (detached) keys and queries."""
        k, q = self.capture.stacked()  # [N, B, H, L, d_h] views of one contiguous copy each
        self.capture.clear()
        if self.aux_optimizer is not None:
            aux = _aux_updates(self.aligner, self.aux_optimizer, self.aux_params, k, q, mask, self.aux_steps,
                               self.clip, self.reduce)
            if sums is not None:
                sums.add_aux(*aux)
        with _held_fixed(self.aux_params):
            per_layer = self.aligner.encoder_loss(k, q, mask)
        if sums is not None:
            sums.add_encoder(per_layer.detach())
        return self.layer_weight * per_layer.sum()


def build_game(model, variant: str, lam: float, options: dict, aux: dict, seed: int, probe_batch: dict,
               qk_pattern: str | None = None, clip: float = 1.0) -> Game:
    """Hook the trainable q/k projections of `model` and build its auxiliary players (module doc)."""
    from aligneval.align.hooks import attach

    capture = attach(model, qk_pattern, trainable_only=True)
    aligner, regularized = _build_aligner(model, capture, probe_batch, variant, options, seed)
    aux_optimizer, aux_params = _aux_optimizer(aligner, aux)
    return Game(aligner, capture, aux_optimizer, aux_params, lam / total_layers(model, regularized),
                int(aux.get("aux_steps") or aligner.aux_steps), clip)


def _aux_updates(aligner, aux_optimizer, aux_params, k, q, mask, steps: int, clip: float, reduce=None):
    """`steps` updates of the auxiliary networks on this batch's detached keys and queries;
    returns (their loss, their diagnostic) per layer from the last update, both [N]."""
    import torch

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
class _StepSums:
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


def _bar_text(label: str, record: dict) -> str:
    text = f"{label} loss {record['task_loss']:.3f}"
    if record.get("diagnostic_layers"):
        values = record["diagnostic_layers"]
        text += f" {record['diagnostic']} {sum(values) / len(values):.3f}"
    return text


def _final(history: list[dict], dev_history: list[dict], aligner) -> dict:
    tail = history[-20:]

    def mean(key):
        return None if aligner is None else sum(r[key] for r in tail) / len(tail)

    def layer_mean(key):
        if aligner is None or not tail[0].get(key):
            return None
        return [round(sum(r[key][i] for r in tail) / len(tail), 6) for i in range(len(tail[0][key]))]

    return {
        "task_loss": history[-1]["task_loss"],
        "alignment_loss": history[-1]["alignment_loss"],
        "task_loss_last20_mean": sum(r["task_loss"] for r in tail) / len(tail),
        "alignment_loss_last20_mean": mean("alignment_loss"),
        "diagnostic": None if aligner is None else aligner.diagnostic,
        "diagnostic_layers_last20_mean": layer_mean("diagnostic_layers"),
        "dev_accuracy": dev_history[-1]["accuracy"] if dev_history else None,
    }


def _progress_bar(enabled: bool, label: str, total: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(file=sys.stderr), transient=False)


def _data_card(examples: Examples) -> dict:
    return {"source": examples.source, "fingerprint": examples.fingerprint, "size": len(examples),
            "skipped": examples.skipped}


def _versions() -> dict:
    from aligneval.versions import package_versions

    return {"python": sys.version.split()[0], **package_versions(VERSIONED_PACKAGES)}
