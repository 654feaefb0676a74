"""docs/extending.md, end to end: a suite, a metric and a report section, each ONE file in a plugin
package that importlib.metadata really finds (a `*.dist-info/entry_points.txt` on PYTHONPATH, group
`aligneval.plugins`; no monkeypatching), seen in `aligneval suites list` / `show`, in a real
`aligneval run` on two tiny models, and in `aligneval report` (HTML and markdown)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import make_tiny_pair
from tests.tiny_eval import SPEC, write_eval_fixture

ROOT = Path(__file__).resolve().parent.parent

DOC = ROOT / "docs" / "extending.md"
PLUGIN_MODULES = ("ae_error_rate", "ae_mean_confidence", "ae_mean_confidence_section")


def doc_files() -> dict[str, str]:
    """The recipes' files, from docs/extending.md: each python block whose first line is `# <module>.py`."""
    blocks = re.findall(r"```python\n# (\w+)\.py\n(.*?)```", DOC.read_text(), re.S)
    return {name: body for name, body in blocks}


def doc_entry_points() -> str:
    """The `entry_points.txt` the doc shows (what pip writes into the plugin's *.dist-info/)."""
    return re.search(r"```ini\n(\[aligneval\.plugins\]\n.*?)```", DOC.read_text(), re.S)[1]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    files = doc_files()
    assert set(PLUGIN_MODULES) <= set(files), sorted(files)
    for name in PLUGIN_MODULES:
        (root / f"{name}.py").write_text(files[name])
    dist = root / "ae_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ae-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(doc_entry_points())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(root)]),
           "ALIGNEVAL_CACHE": str(root / "cache")}
    return env


def aligneval(env, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "aligneval", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_plugin_suite_is_listed_and_shown(plugin_env):
    out = aligneval(plugin_env, "suites", "list").stdout
    assert re.search(r"^\s+mean_confidence\s+mean max-softmax probability on each test split$", out, re.M), out
    shown = aligneval(plugin_env, "suites", "show", "mean_confidence").stdout
    assert 'roles = ["test"]' in shown


def table_rows(md: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table under `heading` (a line starting with it)."""
    lines = md[md.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_plugin_suite_metric_and_section_in_a_run_and_its_report(plugin_env, tmp_path):
    models = make_tiny_pair(tmp_path / "models")
    spec = write_eval_fixture(tmp_path / "data", spec=SPEC.replace(
        "[suites.accuracy]", '[suites.accuracy]\nmetrics = ["accuracy", "error_rate", "macro_f1"]\n'
        "[suites.mean_confidence]"))
    run = tmp_path / "run"
    model_args = [a for name, path in models.items() for a in ("--model", f"{name}={path}")]
    aligneval(plugin_env, "run", str(spec), *model_args, "--out", str(run), "--no-progress")

    doc = json.loads((run / "results.json").read_text())
    by = {(r["suite"], r["split"], r["model"], r["metric"]): r for r in doc["records"]}
    for model in models:
        acc, err = by[("accuracy", "test", model, "accuracy")], by[("accuracy", "test", model, "error_rate")]
        assert err["higher_is_better"] is False  # the direction declared on the metric
        assert err["value"] == pytest.approx(1 - acc["value"], abs=1e-12)  # reference: the accuracy record
        conf = by[("mean_confidence", "test", model, "mean_confidence")]
        assert 0.5 <= conf["value"] <= 1.0 and conf["n"] == 48  # two classes: max prob >= 1/2

    aligneval(plugin_env, "report", str(run), "--out", str(tmp_path / "report"), "--resamples", "50")
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    # the metric: its label, at its declared place between Accuracy and Macro-F1 in the headline table
    labels = [re.sub(r"\s*[↑↓]$", "", row[0]) for row in table_rows(md, "## Headline")]
    assert labels[:3] == ["Accuracy", "Error rate", "Macro-F1"], labels
    assert table_rows(md, "## Headline")[1][0] == "Error rate ↓"  # lower is better, from the metric
    cells = [f'c-metric">{label}&nbsp;' for label in ("Accuracy", "Error rate", "Macro-F1")]
    assert html.index(cells[0]) < html.index(cells[1]) < html.index(cells[2])
    # the section: in both formats, after the built-in sections, with the suite's values
    assert 'id="mean_confidence"' in html and "Mean confidence" in html
    rows = table_rows(md, "## Mean confidence")
    values = {(r[0], r[1]): r[2] for r in rows}
    for model in models:
        assert float(values[(model, "test")]) == pytest.approx(
            by[("mean_confidence", "test", model, "mean_confidence")]["value"], abs=1e-3)
    assert html.index('id="risk_coverage"') < html.index('id="mean_confidence"')

    # a section belongs to its suites: a run without mean_confidence has no such section
    aligneval(plugin_env, "run", str(spec), *model_args, "--out", str(tmp_path / "plain"), "--no-progress",
              "--suite", "accuracy")
    aligneval(plugin_env, "report", str(tmp_path / "plain"), "--out", str(tmp_path / "plain-report"),
              "--resamples", "20")
    assert "Mean confidence" not in (tmp_path / "plain-report" / "report.md").read_text()
