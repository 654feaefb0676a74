"""Everything `align` checks before it reads data or a model (seeds, λ, numbers, variant options, the
auxiliary players' settings, the task), and the resume plan: which folders of a run are finished
and which still have to be trained."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from aligneval.align.cards import read_card
from aligneval.align.variants import build_aligner
from aligneval.choices import is_choices
from aligneval.data import Examples
from aligneval.errors import UsageError
from aligneval.paths import check_output_dir
from aligneval.tasks import MULTIPLE_CHOICE
from aligneval.twins import twin_name


def check_seeds(seeds) -> tuple[int, ...]:
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


def check_aux(aux_lr: float, aux_steps: int | None, variant: str | None = None, options: dict | None = None) -> dict:
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


    with torch.random.fork_rng(devices=[]):
        return int(build_aligner(variant, 1, 4, **options).aux_steps)


def check_options(variant: str, options: dict) -> None:
    """Unknown variant options fail before any data or model is read."""


    with torch.random.fork_rng(devices=[]):
        build_aligner(variant, 1, 4, **options)


def check_numbers(hp: dict) -> None:
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

def check_task(examples: Examples, task: str) -> None:
    """A DataSource given as an object carries its own columns: they must fit the task."""
    if is_choices(examples) != (task == MULTIPLE_CHOICE):
        raise UsageError(f"{examples.source}: the data is {'' if is_choices(examples) else 'not '}multiple choice "
                         f"but the task is {task}; name the task with --task (and choice columns for multiple choice)")


def model_ref(model: str) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


def run_key(run: dict) -> str:
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def _targets(out: Path, seeds: tuple[int, ...]) -> list[tuple[int, Path]]:
    if len(seeds) == 1:
        return [(seeds[0], out)]
    return [(s, out / f"seed-{s}") for s in seeds]

def plan_folders(out: Path, seeds: tuple[int, ...], lams: tuple[float, ...], keys: dict, overwrite: bool):
    """[(seed, {role: folder}, roles_to_train)], role "baseline" or a λ; refuses an out folder of
    another run. A finished folder of the same run is kept, so a re-run resumes and a grid can grow."""
    check_output_dir(out, "--out")
    plan = []
    for seed, folder in _targets(out, seeds):
        folders = {"baseline": folder / "baseline"}
        folders.update({v: folder / twin_name(v, len(lams) > 1) for v in lams})
        roles = []
        for role, target in folders.items():
            if not target.exists():
                roles.append(role)
                continue
            card = read_card(target)
            if card is not None and card.get("run_key") == keys[role] and card.get("seed") == seed:
                continue  # finished: keep it
            if not overwrite:
                what = "a different run" if card is not None else "files that are not a finished aligneval model"
                raise UsageError(f"{target} holds {what}; pass --overwrite to replace it or choose another --out")
            roles.append(role)
        plan.append((seed, folders, roles))
    return plan

