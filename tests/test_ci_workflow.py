"""The GitHub Actions workflow in docs/ci.md, run here step by step as written: every `run:` step of the
YAML executes verbatim in a scratch checkout (tiny local models at checkpoints/ci/, a small spec at
suites/sentiment-shift.toml, a fake `gh` that serves a release tarball). Only the `uses:` actions and
the install step are left out. Two pull requests: the first has no release to gate against; after the
run is released with the command the notes give, the second re-scores from the prediction cache without
writing to it and gates `--against` the release."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.tiny import make_tiny_model
from tests.tiny_eval import write_eval_fixture

DOC = Path(__file__).resolve().parent.parent / "docs" / "ci.md"
RULES = """\
"accuracy/accuracy [test]"   = "no significant drop at 0.05"
"calibration/ece@15 [*]"     = "candidate <= baseline + 0.5pt"
"calibration/nll [test]"     = "no significant drop at 0.05"
[gate]
baseline = "baseline"
candidate = "aligned"
"""
FAKE_GH = """#!/usr/bin/env bash
# `gh release download --pattern P --dir D`: copy the release asset if one was published
dir=.
while [ $# -gt 0 ]; do case "$1" in --dir) dir="$2"; shift;; esac; shift; done
[ -f "$RELEASE_ASSET" ] || { echo "release not found" >&2; exit 1; }
cp "$RELEASE_ASSET" "$dir/"
"""


def workflow() -> dict:
    import yaml

    block = re.search(r"```yaml\n(# \.github/workflows/aligneval\.yml\n.*?)```", DOC.read_text(), re.S)
    assert block, "docs/ci.md has no workflow block"
    return yaml.safe_load(block.group(1))


def release_command() -> str:
    line = re.search(r"`(tar -czf aligneval-run\.tar\.gz [^`]+)`", DOC.read_text())
    assert line, "docs/ci.md does not say how to release a run"
    return line.group(1)


@pytest.fixture
def checkout(tmp_path):
    """A repository as the workflow expects it: models, spec + data, rules, and .venv/bin/aligneval."""
    repo = tmp_path / "repo"
    model = make_tiny_model(tmp_path / "model")
    for name in ("baseline", "aligned"):  # the same weights: the gate must pass
        shutil.copytree(model, repo / "checkpoints" / "ci" / name)
    spec = write_eval_fixture(repo / "suites", n=40)
    spec.rename(repo / "suites" / "sentiment-shift.toml")
    (repo / "rules.toml").write_text(RULES)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "aligneval").symlink_to(Path(sys.executable).parent / "aligneval")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "gh").write_text(FAKE_GH)
    (tools / "gh").chmod(0o755)
    return repo, tools


def run_steps(repo: Path, tools: Path, release_asset: Path) -> dict[str, subprocess.CompletedProcess]:
    job = workflow()["jobs"]["evaluate"]
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "RELEASE_ASSET": str(release_asset)}
    for key, value in job.get("env", {}).items():
        env[key] = str(value).replace("${{ github.workspace }}", str(repo))
    env.pop("GITHUB_STEP_SUMMARY", None)
    done = {}
    for step in job["steps"]:
        if "run" not in step or step["run"].startswith("bash scripts/install.sh"):
            continue  # actions, and the install this test environment already is
        assert "${{" not in step["run"], f"step '{step['name']}' uses an expression this test cannot evaluate"
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=repo,
                              env={**env, **{k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)}},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"step '{step['name']}' exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        done[step["name"]] = proc
    return done


def cache_state(repo: Path) -> dict[str, int]:
    return {str(p.relative_to(repo)): p.stat().st_mtime_ns for p in (repo / ".aligneval-cache").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_documented_workflow_runs_gates_and_reuses_its_prediction_cache(checkout, tmp_path):
    repo, tools = checkout
    asset = tmp_path / "release" / "aligneval-run.tar.gz"

    first = run_steps(repo, tools, asset)  # a pull request before any release
    assert {"Evaluate (predictions come from the cache when nothing changed)", "Report (no model is loaded)",
            "Gate"} <= set(first)
    assert "no release yet" in first["Fetch the released run to compare against"].stdout
    assert (repo / "reports" / "ci" / "report.html").is_file()
    cases = ET.parse(repo / "reports" / "ci" / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) >= 3
    cached = cache_state(repo)
    assert cached, "the first run left no predictions in $ALIGNEVAL_CACHE"

    subprocess.run(release_command(), shell=True, cwd=repo, check=True)  # release the run as the notes say
    asset.parent.mkdir()
    shutil.move(repo / "aligneval-run.tar.gz", asset)
    shutil.rmtree(repo / "runs")
    shutil.rmtree(repo / "reports")

    second = run_steps(repo, tools, asset)  # the next pull request
    assert (repo / "releases" / "latest" / "run" / "results.json").is_file()
    assert cache_state(repo) == cached  # every prediction came from the cache: nothing recomputed or rewritten
    assert (repo / "runs" / "ci" / "predictions").is_dir()
    # the gate says which run the baseline came from, on the console and in the JUnit properties
    assert "vs baseline (releases/latest/run)" in " ".join(second["Gate"].stdout.split())
    props = {p.get("name"): p.get("value") for p in ET.parse(repo / "reports" / "ci" / "junit.xml").iter("property")}
    assert props["against"] == "releases/latest/run" and props["run"] == "runs/ci"
