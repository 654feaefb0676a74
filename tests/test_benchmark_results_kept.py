"""Benchmark results files only grow: every run any commit recorded under benchmarks/results/ is still
in the benchmark's files today (a restored run carries an extra "restored" note, nothing else
changed). Needs the git history; skipped in an export or a shallow clone without it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _key(run: dict) -> str:
    return json.dumps({k: v for k, v in run.items() if k != "restored"}, sort_keys=True)


def _benchmark(path: str) -> str:
    return Path(path).name.split("-")[0]


def test_every_recorded_run_is_still_kept():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("no git history here")
    try:
        commits = _git("log", "--format=%H", "--", RESULTS).split()
    except subprocess.CalledProcessError:
        pytest.skip("no git history here")
    if not commits or _git("rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.skip("shallow clone: the history of the results is not here")
    kept: dict[str, set[str]] = {}
    for path in (ROOT / RESULTS).glob("*.json"):
        kept.setdefault(_benchmark(path.name), set()).update(_key(r) for r in json.loads(path.read_text())["runs"])
    missing = []
    for commit in commits:
        for path in _git("ls-tree", "-r", "--name-only", commit, "--", RESULTS).split():
            if not path.endswith(".json"):
                continue
            doc = json.loads(_git("show", f"{commit}:{path}"))
            for run in doc.get("runs", []):
                if _key(run) not in kept.get(_benchmark(path), set()):
                    missing.append(f"{path} at {commit[:7]}: {run.get('source')}")
    assert not missing, "runs recorded earlier are gone:\n" + "\n".join(missing)
