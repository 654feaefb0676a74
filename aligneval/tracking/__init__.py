"""`--log-to mlflow|wandb`: publish a run, a report or an align run to an experiment tracker.

Each tracker is one writer module registered here by name (imported only when chosen, with its
optional extra). Writers translate an `aligneval.tracking.payload.Payload`, built from the files the
command has already written, so a missing extra or an unreachable server (one line, exit 5) never
loses a result. The writers keep what they need to find their run again (the MLflow run id, so
`report` adds to the run `run` started) in `<folder>/tracking.json`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterable

from aligneval.artifacts import read_json, write_json_atomic
from aligneval.errors import ArtifactError, ResourceError
from aligneval.registry import Registry
from aligneval.tracking.payload import Payload

TRACKERS: Registry[str] = Registry("tracker")
TRACKERS.add("mlflow", "aligneval.tracking.mlflow_writer")
TRACKERS.add("wandb", "aligneval.tracking.wandb_writer")
STATE_FILE = "tracking.json"


def check(names: Iterable[str] | None) -> list[str]:
    """The trackers asked for, checked before any work (unknown name: exit 2 with a "did you mean")."""
    out = []
    for name in names or []:
        TRACKERS.get(name)
        out.append(name)
    return list(dict.fromkeys(out))


def extra_missing(name: str, package: str) -> ResourceError:
    return ResourceError(f"--log-to {name} needs {package}: pip install 'aligneval[{name}]' "
                         "(your results are written; re-run the command with --log-to to log them)")


def _state(folder: Path) -> dict:
    file = folder / STATE_FILE
    if not file.is_file():
        return {}
    try:
        doc = read_json(file, "tracking state")
    except ArtifactError:
        return {}
    return doc if isinstance(doc, dict) else {}


def publish(names: Iterable[str], payload: Payload, folder: str | Path) -> list[str]:
    """Send `payload` to every tracker in `names`; returns one line per tracker saying where it went.
    `folder` holds the local stores by default (MLflow's sqlite, W&B's offline runs) and tracking.json."""
    folder = Path(folder)
    lines = []
    for name in names:
        writer = importlib.import_module(TRACKERS.get(name))
        state = _state(folder)
        line, mine = writer.publish(payload, folder, state.get(name) or {})
        state[name] = mine
        write_json_atomic(folder / STATE_FILE, state)
        lines.append(line)
    return lines
