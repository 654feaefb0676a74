"""One comparison, one flow: `report` writes comparison.json, `gate` (and a re-run of `report`) reads
it while it is fresh, so the report and the gate cannot disagree; stale files are recomputed."""

from __future__ import annotations

import json

import pytest

from aligneval.compare import stored as comparison_file
from aligneval.cli import main
from aligneval.compare import compare, plan
from aligneval.gate import gate
from tests.fixtures_results import make_run

FAST = ["--resamples", "100", "--max-resamples", "100"]
RULE = '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n'


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `report` writes reports/<run name>/ by default, relative to here
    run = make_run(tmp_path / "runs" / "x", n=150, attacks=False)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE)
    return tmp_path, run, rules


def _edit_test_accuracy(path, **values):
    doc = json.loads(path.read_text())
    for r in doc["comparison"]["records"]:
        if r["metric"] == "accuracy" and r["split"] == "test":
            r.update(values)
    path.write_text(json.dumps(doc))


def test_gate_and_report_read_the_same_comparison_json(setup, capsys):
    root, run, rules = setup
    assert main(["report", str(run), "--format", "md", *FAST]) == 0
    stored = root / "reports" / "x" / "comparison.json"
    assert stored.is_file()
    capsys.readouterr()
    # the gate finds the report's comparison.json by default and uses it (it is fresh)
    result = gate(run, rules, resamples=100, max_resamples=100)
    assert result.comparison == str(stored.relative_to(root))  # reports/x/comparison.json
    assert result.exit_code == 0
    # edit it: the test accuracy now looks like a significant drop
    _edit_test_accuracy(stored, candidate=0.1234, delta=-0.6543, p_value=1e-9, p_value_raw=1e-9, verdict="worse",
                        ci_low=-0.7, ci_high=-0.6)
    assert main(["gate", str(run), "--rules", str(rules), *FAST]) == 1
    out = capsys.readouterr().out
    assert "0.1234" in out and "significant drop" in out
    # the report, re-run with the same settings, re-renders from the same file and shows the same change
    assert main(["report", str(run), "--format", "md", *FAST]) == 0
    assert "reused" in capsys.readouterr().out
    md = (root / "reports" / "x" / "report.md").read_text()
    assert "0.1234" in md and "−0.6543" in md
    row = next(r for r in json.loads(stored.read_text())["comparison"]["records"]
               if r["metric"] == "accuracy" and r["split"] == "test")
    assert row["candidate"] == 0.1234  # the report rewrote the file it read, unchanged


def test_a_stale_comparison_is_recomputed(setup, capsys):
    root, run, rules = setup
    out = root / "rep"
    assert main(["report", str(run), "--out", str(out), "--format", "md", *FAST]) == 0
    stored = out / "comparison.json"
    _edit_test_accuracy(stored, candidate=0.1234, delta=-0.6543, p_value=1e-9, p_value_raw=1e-9)
    # other settings: not this comparison
    result = gate(run, rules, resamples=200, max_resamples=200, comparison=stored)
    assert result.comparison.startswith("computed") and "resamples was 100, now 200" in result.comparison
    assert result.exit_code == 0
    # the run changed since (results.json rewritten): stale too
    doc = json.loads((run / "results.json").read_text())
    doc["created"] = "2027-01-01T00:00:00Z"
    (run / "results.json").write_text(json.dumps(doc))
    p = plan(run, resamples=100, max_resamples=100)
    comp, why = comparison_file.read_fresh(stored, p)
    assert comp is None and "changed since the comparison was written" in why
    result = gate(run, rules, resamples=100, max_resamples=100, comparison=stored)
    assert result.comparison.startswith("computed") and result.exit_code == 0
    # the report recomputes as well (and says nothing about reusing)
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(out), "--format", "md", *FAST]) == 0
    assert "reused" not in capsys.readouterr().out
    assert "0.1234" not in (out / "report.md").read_text()


def test_compare_writes_next_to_the_run_and_the_gate_reads_it(setup):
    root, run, rules = setup
    assert main(["compare", str(run), *FAST]) == 0
    assert (run / "comparison.json").is_file()
    result = gate(run, rules, resamples=100, max_resamples=100)
    assert result.comparison == str(run / "comparison.json")
    # an explicit --comparison that does not exist is a missing artifact
    assert main(["gate", str(run), "--rules", str(rules), "--comparison", str(root / "none.json")]) == 3


def test_fresh_means_same_inputs_and_settings(setup):
    _, run, _ = setup
    comp = compare(run, resamples=100, max_resamples=100)
    path = comp.write(run / "c.json")
    assert comparison_file.read_fresh(path, plan(run, resamples=100, max_resamples=100))[0] is not None
    for kwargs, needle in (({"adjust": "bh"}, "adjust"), ({"min_n": 10}, "min_n"), ({"seed": 1}, "seed"),
                           ({"primary": ["accuracy"]}, "primary")):
        fresh, why = comparison_file.read_fresh(path, plan(run, resamples=100, max_resamples=100, **kwargs))
        assert fresh is None and needle in why
    path.write_text("{ truncated")
    fresh, why = comparison_file.read_fresh(path, plan(run, resamples=100, max_resamples=100))
    assert fresh is None and "corrupt" in why
