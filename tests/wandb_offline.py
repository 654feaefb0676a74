"""Read an offline W&B run back from its own files: the run's `.wandb` transaction log (LevelDB log
framing: a 7-byte ":W&B" header, then 32 KiB blocks of [crc32, length, type] records) decoded with
wandb's own protobuf `Record`. Newer wandb (the wandb-core service) writes no wandb-summary.json or
config.yaml for an offline run; everything a sync would upload is in this file."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    out, pending, pos = [], b"", HEADER
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            out.append(body)
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            out.append(pending + body)
            pending = b""
    return out


@dataclass
class OfflineRun:
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    group: str = ""
    job_type: str = ""


def _items(update) -> dict:
    return {(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in update}


def read_run(run_dir: Path) -> OfflineRun:
    """Config, summary, history and saved files of one offline run folder (offline-run-*/)."""
    from wandb.proto import wandb_internal_pb2 as pb

    [log] = list(Path(run_dir).glob("run-*.wandb"))
    run = OfflineRun()
    for raw in records(log):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.config.update({k: v.get("value", v) if isinstance(v, dict) else v
                               for k, v in _items(rec.run.config.update).items()})
            run.group, run.job_type = rec.run.run_group, rec.run.job_type
        elif kind == "config":
            run.config.update({k: v.get("value", v) if isinstance(v, dict) else v
                               for k, v in _items(rec.config.update).items()})
        elif kind == "summary":
            run.summary.update(_items(rec.summary.update))
        elif kind == "history":
            run.history.append(_items(rec.history.item))
        elif kind == "files":
            run.files += [f.path for f in rec.files.files]
    return run
