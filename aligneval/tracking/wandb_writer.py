"""Weights & Biases: a payload as a W&B run; child payloads (seeds, λ twins) as runs of the same group.

Mode: `WANDB_MODE` when set, else online when `WANDB_API_KEY` is set, else offline. Offline runs are
written under `<folder>/wandb/` (`wandb sync` uploads them later). Params become the run's config,
metrics without a step its summary, per-step curves its history; verdicts are summary strings, the
comparison table a `wandb.Table`, and the files are saved with the run.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from aligneval.errors import ResourceError
from aligneval.tracking import extra_missing
from aligneval.tracking.payload import Payload

PROJECT = "aligneval"
INIT_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 5.0


def _import():
    try:
        import wandb
    except ImportError:
        raise extra_missing("wandb", "wandb") from None
    return wandb


def mode() -> str:
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def _probe() -> None:
    """Online: one short request to the W&B server first (wandb.init would retry for a minute)."""
    base = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    try:
        urllib.request.urlopen(base, timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as exc:
        raise ResourceError(f"W&B server {base} is unreachable ({getattr(exc, 'reason', exc)}); your results are "
                            "written, re-run with --log-to wandb when it is up (or WANDB_MODE=offline)") from None


def _one(wandb, payload: Payload, folder: Path, group: str, job: str) -> Any:
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, init_timeout=INIT_TIMEOUT_S)
    run = wandb.init(project=os.environ.get("WANDB_PROJECT") or PROJECT, name=payload.name, group=group,
                     job_type=job, config=dict(payload.params), dir=str(folder), mode=mode(),
                     settings=settings)
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for m in payload.metrics:
        if m.step is not None:
            steps[m.step][m.key] = m.value
    for step in sorted(steps):
        run.log(steps[step], step=step)
    run.summary.update({m.key: m.value for m in payload.metrics if m.step is None})
    run.summary.update(dict(payload.tags))
    if payload.table:
        columns = list(payload.table[0])
        run.log({"comparison_table": wandb.Table(columns=columns, data=[[r[c] for c in columns]
                                                                        for r in payload.table])})
    for f in payload.files:  # a copy in the run folder: the run keeps the file as it was when logged
        if Path(f).is_file():
            kept = shutil.copy2(f, Path(run.dir) / Path(f).name)
            run.save(str(kept), base_path=run.dir, policy="now")
    run.finish()
    return run


def publish(payload: Payload, folder: Path, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Log `payload` and its children; returns (a line for the console, the state to keep)."""
    wandb = _import()
    if mode() == "online":
        _probe()
    folder.mkdir(parents=True, exist_ok=True)
    job = payload.tags.get("aligneval.command", "aligneval")
    try:
        runs = [_one(wandb, payload, folder, payload.name, job)]
        runs += [_one(wandb, child, folder, payload.name, "model") for child in payload.children]
    except (wandb.errors.Error, OSError, TimeoutError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ResourceError(f"W&B: {first}; your results are written, re-run with --log-to wandb") from None
    where = str(Path(runs[0].dir).parent)
    line = (f"logged to W&B ({mode()}): run {runs[0].id}"
            + (f" and {len(runs) - 1} runs in group {payload.name}" if len(runs) > 1 else "")
            + (f" in {where}; `wandb sync {where}` uploads it" if mode() == "offline" else ""))
    return line, {"mode": mode(), "group": payload.name, "runs": [{"id": r.id, "dir": str(Path(r.dir).parent)}
                                                                   for r in runs]}
