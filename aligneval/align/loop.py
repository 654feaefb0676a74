"""The training loop of one twin: AdamW with linear warm-up and decay, the seeded batch order and
dropout stream shared by both twins, gradient accumulation and clipping, the alignment term from
the game, dev accuracy after each epoch, the training log, and the summary written into the card."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import get_linear_schedule_with_warmup

from aligneval import distributed
from aligneval.align.batches import collate, epoch_batches
from aligneval.align.game import AUX_DEFAULTS, AUX_LR_RATIO, StepSums, build_game
from aligneval.align.hooks import freeze_bottom


def build_optimizer(model, hp: dict):
    """AdamW over the model's trainable parameters only; the auxiliary networks have their own."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": hp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=hp["lr"], eps=1e-8)


def evaluate(model, features: dict, batch_size: int) -> float:
    order = sorted(range(len(features["lengths"])), key=lambda i: features["lengths"][i])
    correct = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size * 2):
            batch, labels = collate(features, order[start : start + batch_size * 2])
            device = next(model.parameters()).device
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            correct += int((logits.argmax(-1).cpu() == labels).sum())
    model.train(was_training)
    return correct / max(1, len(order))


def train_model(model, features, dev_features, log_path: Path | None, *, variant, lam, options, seed, hp, progress, label,
           aux=None, accelerator=None):
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
        probe_batch, _ = collate(features, [0])
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
    optimizer = build_optimizer(model, hp)
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
                sums = StepSums()
                for part, index in enumerate(group):
                    batch, labels = collate(features, index)  # built on the CPU, then moved
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
                    record["dev_accuracy"] = evaluate(model, dev_features, hp["batch_size"])  # the plain module:
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
    return {"steps": step, "epochs_run": epoch, "below_alpha": game and game.below_alpha,
            "final": _final(history, dev_history, game and game.aligner),
            "dev_history": dev_history, "wall_time_s": round(time.perf_counter() - start_time, 3)}


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

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(file=sys.stderr), transient=False)

