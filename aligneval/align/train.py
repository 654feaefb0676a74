"""Fine-tune the baseline and its aligned twin identically; the only difference is the regularizer.

Both twins start from the same loaded weights (one load, one deep copy: same classifier head), see
the same batches in the same order (a seeded generator per model), use the same AdamW, linear
warm-up/decay, clipping, accumulation and number of steps, and the same global RNG stream for
dropout (the auxiliary nets draw from their own generators). Each finished model folder is written
to a temporary folder next to its target and renamed into place, so an interrupted run never leaves
a half-written checkpoint, and a re-run skips what is finished.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from aligneval import distributed
from aligneval.align.batches import data_source, tokenize
from aligneval.align.cards import CARD_FORMAT, CARD_NAME, LOG_NAME, data_card, versions
from aligneval.align.game import AUX_DEFAULTS, AUX_LR_RATIO
from aligneval.align.loading import check_architecture, load_pretrained
from aligneval.align.lora import LoraSettings, adapt, card as lora_card, check_compatible, for_saving, parse_lora
from aligneval.align.loop import train_model
from aligneval.align.plan import check_aux, check_lambdas, check_numbers, check_options, check_seeds, check_task, \
    model_ref, plan_folders, run_key
from aligneval.align.variants import get_variant
from aligneval.data import DataSource, load_examples, require_classes
from aligneval.errors import UsageError
from aligneval.quiet import transformers_bars_off
from aligneval.tasks import DEFAULT_TASK, get_task


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
    get_variant(variant)  # unknown variant -> "did you mean" before any work
    seeds = check_seeds(seeds)
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
    check_numbers(hp)
    options = dict(variant_options or {})
    check_options(variant, options)
    aux = check_aux(AUX_LR_RATIO * lr if aux_lr is None and isinstance(lr, (int, float)) else aux_lr, aux_steps,
                     variant, options)
    accelerator = distributed.make_accelerator(device, mixed_precision)  # bad device/precision: exit 2 now

    train_src = data_source(train, data_kwargs, task)
    dev_src = None if dev is None else data_source(dev, data_kwargs, task)
    train_ex = load_examples(train_src)
    check_task(train_ex, task)
    require_classes(train_ex)
    dev_ex = load_examples(dev_src, label_names=train_ex.label_names) if dev_src is not None else None

    common = dict(
        base_model=model_ref(model), hyperparameters=hp, label_names=train_ex.label_names,
        train=train_ex.fingerprint, dev=None if dev_ex is None else dev_ex.fingerprint,
    )
    keys = {"baseline": run_key(dict(common, role="baseline"))}
    for value in lams:
        keys[value] = run_key(dict(common, variant=variant, lam=value, variant_options=options, aux=aux))
    out = Path(out)
    plan = plan_folders(out, seeds, lams, keys, overwrite)
    result = AlignResult(out, [SeedRun(seed, folders["baseline"], {v: folders[v] for v in lams})
                               for seed, folders, _ in plan])
    todo = [(seed, folders, roles) for seed, folders, roles in plan if roles]
    if not todo:
        return result

    tokenizer, loaded = load_pretrained(model, train_ex.label_names, trust_remote_code, allow_pickle, seed=todo[0][0], task=task)
    check_architecture(loaded, qk_pattern, freeze_layers)
    full_size = sum(p.numel() for p in loaded.parameters())
    loaded = adapt(loaded, lora, todo[0][0], qk_pattern)  # LoRA: one adapter init, copied into every twin
    features = tokenize(tokenizer, train_ex, max_length)
    dev_features = tokenize(tokenizer, dev_ex, max_length) if dev_ex is not None else None
    data_summary = {"train": data_card(train_ex), "dev": None if dev_ex is None else data_card(dev_ex)}

    by_seed = {r.seed: r for r in result.runs}
    for seed, folders, roles in todo:
        if loaded is None:
            _, loaded = load_pretrained(model, train_ex.label_names, trust_remote_code, allow_pickle, seed=seed, task=task)
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
                seed=seed, base_model=common["base_model"], hyperparameters=hp, data=data_summary,
                label_names=train_ex.label_names, versions=versions(), run_key=keys[role], task=task,
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
        stats = train_model(model, features, dev_features, tmp / LOG_NAME if main else None, variant=variant, lam=lam,
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

