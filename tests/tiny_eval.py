"""Helpers for the evaluation-engine tests: a three-split fixture and its spec, next to tiny models."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.tiny import write_fixture

SPEC = """
name = "tiny-eval"
seed = 0
max_length = 24
batch_size = 16
[splits.dev]
role = "dev"
path = "dev.jsonl"
id_column = "id"
[splits.test]
role = "test"
path = "test.jsonl"
id_column = "id"
[splits.shifted]
role = "ood"
path = "ood.jsonl"
id_column = "id"
[suites.accuracy]
[suites.calibration]
[suites.ood]
[suites.uncertainty]
"""


def write_eval_fixture(folder: Path, n: int = 48, spec: str = SPEC) -> Path:
    """dev/test/ood jsonl files (ids ex0.., labels 0/1) and a spec using them; returns the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed in (("dev", 1), ("test", 2), ("ood", 3)):
        write_fixture(folder, n=n, name=name, seed=seed)
    path = folder / "spec.toml"
    path.write_text(textwrap.dedent(spec))
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
