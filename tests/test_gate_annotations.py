"""GitHub Actions annotations from the gate: under GITHUB_ACTIONS=true one `::error` per failed rule and one
`::warning` per rule without a verdict, each naming the rule, the observed Δ with its interval and the
threshold; the step summary still goes to $GITHUB_STEP_SUMMARY; nothing of the kind outside Actions."""

from __future__ import annotations

import json
import re

import pytest

from aligneval.cli import main
from aligneval.compare import compare
from aligneval.formatting import fmt_ci, fmt_delta
from aligneval.gate import GateResult, Outcome, github_annotations, parse_rule
from tests.fixtures_results import make_run

RULES = """\
"accuracy/accuracy [test]"  = "no significant drop at 0.05"
"calibration/ece@15 [test]" = "candidate <= baseline - 0.05"
"accuracy/accuracy [ood_amazon]" = "candidate >= 0.99"
"""
# workflow command: ::level prop=value,prop=value::message
COMMAND = re.compile(r"^::(?P<level>error|warning) (?P<props>[^:]*)::(?P<message>.*)$")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotations")
    folder = make_run(root / "run", n=300, models={"baseline": (1.2, 1.0), "aligned": (2.6, 0.5)}, attacks=False)
    compare(folder, resamples=200).write(folder / "comparison.json")
    return folder


def _rows(run):
    doc = json.loads((run / "comparison.json").read_text())
    return {(r["suite"], r["split"], r["metric"]): r for r in doc["comparison"]["records"]}


def _gate(run, tmp_path, capsys, monkeypatch, rules: str, *extra):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    path = tmp_path / "rules.toml"
    path.write_text(rules)
    code = main(["gate", str(run), "--rules", str(path), "--resamples", "200", *extra])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("::")]
    return code, [COMMAND.match(x) for x in lines], summary, path


def test_one_error_per_failed_rule_naming_rule_delta_interval_threshold(run, tmp_path, capsys, monkeypatch):
    code, found, summary, path = _gate(run, tmp_path, capsys, monkeypatch, RULES)
    assert code == 1
    assert all(found) and [m["level"] for m in found] == ["error", "error"]  # the significance rule passes
    rows = _rows(run)
    ece, acc_ood = rows[("calibration", "test", "ece@15")], rows[("accuracy", "ood_amazon", "accuracy")]
    first, second = (m["message"].replace("%25", "%") for m in found)
    assert "calibration/ece@15 [test]" in first and "candidate ≤ baseline −0.0500" in first
    assert f"Δ {fmt_delta(ece['delta'])} (95% CI {fmt_ci(ece['ci_low'], ece['ci_high'])})" in first
    assert "accuracy/accuracy [ood_amazon]" in second and "candidate ≥ 0.9900" in second
    assert f"Δ {fmt_delta(acc_ood['delta'])} (95% CI {fmt_ci(acc_ood['ci_low'], acc_ood['ci_high'])})" in second
    props = found[0]["props"]
    assert f"file={str(path)}" in props and "line=2" in props and "title=aligneval gate regression%3A" in props
    assert "❌" in summary.read_text()  # the step summary is still written


def test_one_warning_per_rule_without_a_verdict(run, tmp_path, capsys, monkeypatch):
    code, found, _, _ = _gate(run, tmp_path, capsys, monkeypatch,
                              '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n', "--min-n", "1000")
    assert code == 4
    [m] = found
    assert m["level"] == "warning" and "no verdict" in m["props"] and "accuracy/accuracy [test]" in m["message"]
    assert "no significant change in the worse direction at α = 0.05" in m["message"]


def test_no_annotations_outside_github_actions(run, tmp_path, capsys, monkeypatch):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["gate", str(run), "--rules", str(path), "--resamples", "200"]) == 1
    assert not [x for x in capsys.readouterr().out.splitlines() if x.startswith("::")]


def test_annotation_text_is_escaped_as_a_workflow_command():
    rule = parse_rule("a/accuracy [test]", "candidate >= 0.5", 3)
    outcome = Outcome(rule, "test", False, "100% wrong,\nreally: yes", 0.6, 0.4, -0.2, None, (-0.3, -0.1))
    [line] = github_annotations(GateResult([outcome], "baseline", "aligned"), "rules, v2.toml")
    assert "\n" not in line and "100%25 wrong,%0Areally: yes" in line
    assert line.startswith("::error file=rules%2C v2.toml,line=3,title=aligneval gate regression%3A a/accuracy [test]::")


def test_the_documented_workflow_publishes_summary_annotations_and_junit():
    """docs/ci.md's job: the gate writes JUnit where a JUnit report action reads it, with the permission
    to publish a check; the summary and annotations need only the variables Actions sets."""
    from tests.test_ci_workflow import workflow

    job = workflow()["jobs"]["evaluate"]
    gate = next(s for s in job["steps"] if s.get("name") == "Gate")
    junit = re.search(r"--junit (\S+)", gate["run"]).group(1)
    [publish] = [s for s in job["steps"] if "junit-report" in s.get("uses", "")]
    assert publish["with"]["report_paths"] == junit and publish.get("if") == "always()"
    assert job["permissions"]["checks"] == "write"
    assert "GITHUB_ACTIONS" not in str(job) and "GITHUB_STEP_SUMMARY" not in str(job)  # set by the runner
