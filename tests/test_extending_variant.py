"""A loss variant from a third-party plugin is one file: it registers itself with `register_variant`,
a package declares the module in the entry-point group `aligneval.plugins`, and `aligneval align`
lists it in --help and trains with it. The plugin is a real installed distribution as far as
importlib.metadata can tell (a `*.dist-info` folder on PYTHONPATH), and the CLI runs in a fresh
process, so nothing is monkeypatched and no earlier test's registry state leaks in."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.tiny import make_tiny_model, write_fixture

REPO = Path(__file__).resolve().parents[1]

# The whole variant, read from docs/extending.md's "A loss variant" recipe so the doc stays true: the
# squared distance between each head's mean key and mean query over the valid tokens, one per layer.
VARIANT_FILE = re.search(r"```python\n# mean_gap_variant\.py\n(.*?)```", (REPO / "docs" / "extending.md").read_text(),
                         re.S)[1]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """PYTHONPATH with a plugin distribution `mean-gap-variant` declaring its one module."""
    site = tmp_path_factory.mktemp("site")
    (site / "mean_gap_variant.py").write_text(VARIANT_FILE)
    dist = site / "mean_gap_variant-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mean-gap-variant\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aligneval.plugins]\nmean-gap = mean_gap_variant\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", COLUMNS="200")
    return env


def _aligneval(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "aligneval", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_the_plugin_variant_is_listed_in_align_help(plugin_env, tmp_path):
    done = _aligneval(plugin_env, "align", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    help_text = " ".join(done.stdout.replace("│", " ").split())
    assert "mean-gap: squared distance between each head's mean key and mean query" in help_text
    for builtin in ("gan:", "ct:", "ct-heads:", "combine:", "mmd:", "sinkhorn:"):
        assert builtin in help_text  # the built-ins are still discovered alongside it


@pytest.mark.slow
def test_align_trains_a_twin_with_the_plugin_variant(plugin_env, tmp_path):
    model, train = make_tiny_model(tmp_path), write_fixture(tmp_path, n=32)
    out = tmp_path / "run"
    done = _aligneval(plugin_env, "align", "--model", str(model), "--train", str(train), "--out", str(out),
                      "--variant", "mean-gap", "--variant-option", "scale=2", "--lambda", "1",
                      "--max-steps", "3", "--batch-size", "8", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "aligned" / "alignment.json").read_text())
    assert card["variant"] == "mean-gap" and card["variant_options"] == {"scale": 2}
    assert card["steps"] == 3 and card["final"]["diagnostic"] == "mean_gap"
    log = [json.loads(line) for line in (out / "aligned" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3
    for record in log:  # the plugin's value per layer (2 layers), logged by the training loop
        assert record["diagnostic"] == "mean_gap" and len(record["alignment_loss_layers"]) == 2
        assert all(value > 0 for value in record["alignment_loss_layers"])
    # the same batches, seed and head: the twins differ only through the plugin's term
    baseline = load_file(out / "baseline" / "model.safetensors")
    aligned = load_file(out / "aligned" / "model.safetensors")
    assert baseline.keys() == aligned.keys()
    assert any(not (baseline[name] == aligned[name]).all() for name in baseline if "key" in name)
    # an option the factory does not take is the usual one-line usage error (exit 2)
    bad = _aligneval(plugin_env, "align", "--model", str(model), "--train", str(train), "--out",
                     str(tmp_path / "bad"), "--variant", "mean-gap", "--variant-option", "width=3",
                     "--max-steps", "1", "--no-progress", cwd=tmp_path)
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "mean-gap" in lines[0] and "width" in lines[0], bad.stderr
