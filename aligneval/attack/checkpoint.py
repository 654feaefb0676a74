"""The append-only attack log `runs/<run>/attacks/<model>/<recipe>.jsonl`.

Line 1 is a header naming everything that determines the outcomes (recipe, query budget, seed,
max length, model weights hash, example-ids hash); every further line is one finished example,
flushed and fsynced before the next starts. A re-run with the same header reads finished examples
back; a different header moves the old log aside (`.stale`) and starts fresh; a line cut by a
kill is dropped.

Under several processes each rank appends to its own part, `<recipe>.rank<r>.jsonl`, with the same
header. The main process `consolidate`s before and after the ranks work: it appends the finished rows
of every part to the main log (in example order) and only then deletes the parts, so a kill at any
moment loses nothing, and a re-run with any process count continues from everything finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from aligneval.artifacts import json_lines

FORMAT = 1


def ids_sha256(ids: Iterable[str]) -> str:
    return hashlib.sha256(json.dumps(list(ids), ensure_ascii=False).encode("utf-8")).hexdigest()


def make_header(**fields: Any) -> dict[str, Any]:
    return {"kind": "header", "format": FORMAT, **fields}


def read(path: Path, header: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """Finished rows by id, and what happened: 'new', 'resumed' or 'stale' (header mismatch)."""
    if not path.exists():
        return {}, "new"
    rows: dict[str, dict[str, Any]] = {}
    data = path.read_bytes()
    first: dict[str, Any] | None = None
    good_bytes = 0
    try:  # an unterminated last piece was cut by a kill: dropped, redone; so is a line from a bad one on
        for obj, good_bytes in json_lines(data, complete_only=True):
            if obj is not None:
                if first is None:
                    first = obj
                elif obj.get("kind") == "result":
                    rows[obj["id"]] = obj
    except ValueError:
        pass
    if first is None:  # killed before the header was complete
        path.unlink()
        return {}, "new"
    if first != json.loads(json.dumps(header, ensure_ascii=False)):
        os.replace(path, path.with_name(path.name + ".stale"))
        return {}, "stale"
    with open(path, "r+b") as fh:  # drop a cut last line so appends start on a clean line
        fh.truncate(good_bytes)
    return rows, "resumed"


class Appender:
    """Writes the header (when new) and one fsynced line per finished example."""

    def __init__(self, path: Path, header: dict[str, Any]):
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        self.fh = open(path, "a", encoding="utf-8")
        if new:
            self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        self.fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def write(self, row: dict[str, Any]) -> None:
        self._write({"kind": "result", **row})

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def part_path(path: Path, rank: int) -> Path:
    """The append-only log rank `rank` writes under several processes."""
    return path.with_name(f"{path.stem}.rank{int(rank)}{path.suffix}")


def part_paths(path: Path) -> list[Path]:
    """Existing rank parts of `path` (from any earlier process count), in rank order."""
    found = []
    for p in path.parent.glob(f"{path.stem}.rank*{path.suffix}"):
        rank = p.name[len(path.stem) + len(".rank"):-len(path.suffix) or None]
        if rank.isdigit():
            found.append((int(rank), p))
    return [p for _, p in sorted(found)]


def consolidate(path: Path, header: dict[str, Any], order: Sequence[str],
                gathered: Iterable[dict[str, Any]] = ()) -> tuple[dict[str, dict[str, Any]], str]:
    """Fold every rank part (and `gathered` rows, sent over the process group for ranks whose disk
    the main process cannot see) into the main log; return all finished rows by id and the main log's
    state ('new', 'resumed', 'stale' when it or a part was made with other settings). One process
    only (the main one). Rows are appended in `order` (the example list), parts deleted afterwards."""
    rows, state = read(path, header)
    extra: dict[str, dict[str, Any]] = {}
    for row in gathered:
        if row["id"] not in rows:
            extra.setdefault(row["id"], row)
    for part in part_paths(path):
        got, part_state = read(part, header)
        if part_state == "stale":
            state = "stale"
        for key, row in got.items():
            if key not in rows:
                extra.setdefault(key, row)
    if extra:
        position = {key: i for i, key in enumerate(order)}
        with Appender(path, header) as out:
            for key in sorted(extra, key=lambda k: position.get(k, len(position))):
                row = {k: v for k, v in extra[key].items() if k != "kind"}
                out.write(row)
                rows[key] = {"kind": "result", **row}
    for part in part_paths(path):
        part.unlink()  # only now: every finished row is in the main log, fsynced
    return rows, state

