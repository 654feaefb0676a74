"""The CI gate: every exit code reached through the CLI, rules errors name the line, JUnit XML validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aligneval.cli import main
from aligneval.compare import compare
from aligneval.gate import gate, load_rules, parse_rule
from aligneval.errors import UsageError
from tests.fixtures_results import make_run

XSD = Path(__file__).with_name("junit.xsd")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    # the candidate is clearly more accurate and clearly worse calibrated (under-confident)
    clear = make_run(root / "clear", n=500, models={"baseline": (1.2, 1.0), "aligned": (2.6, 0.5)}, attacks=False)
    return root, clear


def _rules(tmp_path, text: str) -> Path:
    p = tmp_path / "rules.toml"
    p.write_text(text)
    return p


def _validate_junit(path: Path) -> "object":
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.parse(str(path))
    assert schema.validate(doc), schema.error_log
    return doc


def test_exit_0_when_every_rule_passes(runs, tmp_path):
    _, run = runs
    rules = _rules(tmp_path, '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n'
                             '"accuracy/accuracy [ood_amazon]" = "candidate >= 0.5"\n'
                             '"calibration/brier [*]" = "candidate <= baseline + 0.5"\n'
                             '[gate]\nresamples = 200\n')
    junit = tmp_path / "junit.xml"
    assert main(["gate", str(run), "--rules", str(rules), "--junit", str(junit)]) == 0
    doc = _validate_junit(junit)
    cases = doc.findall(".//testcase")
    assert len(cases) == 2 + 3  # the wildcard expands to dev, test, ood_amazon
    assert doc.getroot().get("failures") == "0" and not doc.findall(".//failure")


def test_exit_1_on_a_regression_with_junit_failures(runs, tmp_path, capsys):
    _, run = runs
    rules = _rules(tmp_path, '"calibration/ece@15 [test]" = "no significant drop at 0.05"\n'
                             '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n'
                             '"calibration/ece@15 [ood_amazon]" = "candidate <= baseline + 0.5pt"\n')
    junit = tmp_path / "j.xml"
    assert main(["gate", str(run), "--rules", str(rules), "--junit", str(junit), "--resamples", "200"]) == 1
    doc = _validate_junit(junit)
    failures = doc.findall(".//failure")
    names = [f.getparent().get("name") for f in failures]
    assert "calibration/ece@15 [test]" in names and "accuracy/accuracy [test]" not in names
    assert "significant increase" in failures[0].get("message")
    assert "FAIL" in capsys.readouterr().out


def test_significance_rule_uses_the_metric_direction(runs):
    _, run = runs
    comp = compare(run, resamples=200)
    ece, acc = comp.find("ece@15", "test"), comp.find("accuracy", "test", "accuracy")
    assert ece["delta"] > 0 and ece["p_value"] < 0.05  # ECE went up: worse, since lower is better
    assert acc["delta"] > 0 and acc["p_value"] < 0.05  # accuracy went up: better
    root = Path(comp.results.run_dir).parent
    rules = _rules(root, '"calibration/ece@15 [test]" = "no significant regression at 0.05"\n'
                         '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n')
    result = gate(run, rules, resamples=200)
    verdicts = {o.rule.metric: o.passed for o in result.outcomes}
    assert verdicts == {"ece@15": False, "accuracy": True}


def test_thresholds_margins_and_units(runs, tmp_path):
    _, run = runs
    comp = compare(run, resamples=10, max_resamples=10)
    acc = comp.find("accuracy", "test", "accuracy")
    base, cand = acc["baseline"], acc["candidate"]
    rules = _rules(tmp_path, f'"accuracy/accuracy [test]" = "candidate >= {cand:.6f}"\n'
                             f'"accuracy [ood_amazon]" = "candidate < 0"\n'
                             f'"accuracy/macro_f1 [test]" = "candidate >= baseline - 1pt"\n')
    outs = gate(run, rules, resamples=10, max_resamples=10).outcomes
    assert [o.passed for o in outs] == [cand >= round(cand, 6), False, True]
    r = parse_rule("calibration/ece@15 [test]", "candidate <= baseline + 10%", 3)
    assert r.relative_margin and r.margin == 10 and r.op == "<="
    assert parse_rule("accuracy/accuracy [test]", "candidate >= 80pt", 1).threshold == pytest.approx(0.8)
    assert parse_rule("x/accuracy [t]", "candidate >= baseline - 0.01", 1).margin == pytest.approx(-0.01)
    assert base is not None


@pytest.mark.parametrize("text,line,needle", [
    ('"accuracy/accuracy [test]" = "candidate >= 0.8"\n"accuracy/accuracy [test]" = "x"\n', None, "not valid TOML"),
    ('# comment\n"accuracy/accuracy [test]" = "candidate >= 0.8"\n"calibration/ece@15 [test]" = "maybe better"\n',
     3, "cannot read rule"),
    ('\n\n"accuracy/accurcy [test]" = "candidate >= 0.8"\n', 3, "did you mean 'accuracy'"),
    ('"accuracy/accuracy test" = "candidate >= 0.8"\n', 1, "must look like"),
    ('"accuracy/accuracy [test]" = 0.8\n', 1, "must be a string"),
    ('"accuracy/accuracy [test]" = "no significant drop at 5"\n', 1, "between 0 and 1"),
    ('[gate]\nresamples = "many"\n', 2, "must be a int"),
    ('# nothing\n', None, "no rules"),
])
def test_exit_2_on_malformed_rules_naming_the_line(runs, tmp_path, capsys, text, line, needle):
    _, run = runs
    rules = _rules(tmp_path, text)
    assert main(["gate", str(run), "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert f"rules.toml:{line}:" in err if line else "rules.toml" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_exit_2_for_a_missing_rules_file_or_unknown_model(runs, tmp_path, capsys):
    _, run = runs
    assert main(["gate", str(run), "--rules", str(tmp_path / "none.toml")]) == 2
    rules = _rules(tmp_path, '"accuracy/accuracy [test]" = "candidate >= 0.1"\n')
    assert main(["gate", str(run), "--rules", str(rules), "--candidate", "ghost"]) == 2
    assert "ghost" in capsys.readouterr().err


def test_exit_3_on_missing_or_corrupt_artifacts(runs, tmp_path, capsys):
    _, run = runs
    rules = _rules(tmp_path, '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n')
    assert main(["gate", str(tmp_path / "no-run"), "--rules", str(rules)]) == 3
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{ not json")
    assert main(["gate", str(broken), "--rules", str(rules)]) == 3
    # a rule on a split the run never produced
    wrong_split = _rules(tmp_path, '"accuracy/accuracy [twitter]" = "candidate >= 0.5"\n')
    assert main(["gate", str(run), "--rules", str(wrong_split)]) == 3
    assert "twitter" in capsys.readouterr().err
    # the predictions needed for the paired test are gone
    run2 = make_run(tmp_path / "r2", n=50, attacks=False)
    (run2 / "predictions" / "aligned" / "test.parquet").unlink()
    assert main(["gate", str(run2), "--rules", str(rules)]) == 3


def test_against_an_older_run(tmp_path):
    old = make_run(tmp_path / "old", n=300, models={"baseline": (1.0, 1.0), "aligned": (1.1, 1.0)}, attacks=False)
    new = make_run(tmp_path / "new", n=300, models={"baseline": (1.0, 1.0), "aligned": (2.8, 1.0)}, attacks=False)
    rules = _rules(tmp_path, '"accuracy/accuracy [test]" = "candidate >= baseline"\n'
                             '"accuracy/accuracy [ood_amazon]" = "no significant drop at 0.05"\n')
    assert main(["gate", str(new), "--rules", str(rules), "--against", str(old / "results.json"),
                 "--resamples", "50", "--max-resamples", "50"]) == 0
    # the reference is the old run's aligned model: --baseline picks it
    res = gate(new, rules, against=old, baseline="aligned", candidate="aligned", resamples=50, max_resamples=50)
    old_acc = json.loads((old / "results.json").read_text())
    want = next(r["value"] for r in old_acc["records"] if r["model"] == "aligned" and r["metric"] == "accuracy"
                and r["split"] == "test" and r["suite"] == "accuracy")
    assert res.outcomes[0].baseline == want
    # an older run on different data cannot be paired: exit 4 (unusable data), as `report` says
    other = make_run(tmp_path / "other", n=300, seed=5, attacks=False)
    assert main(["gate", str(new), "--rules", str(rules), "--against", str(other)]) == 4
    assert main(["report", str(new), "--against", str(other), "--out", str(tmp_path / "rep")]) == 4


def test_markdown_summary_goes_to_github_step_summary(runs, tmp_path, monkeypatch):
    _, run = runs
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rules = _rules(tmp_path, '"accuracy/accuracy [test]" = "candidate >= 0.99"\n')
    assert main(["gate", str(run), "--rules", str(rules)]) == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "aligneval gate: ❌ 1 regression" in text
    assert "| accuracy/accuracy \\[test\\] | candidate &gt;= 0.99 | ❌ fail |" in text


def test_rules_can_live_under_a_rules_table(tmp_path):
    p = _rules(tmp_path, '[rules]\n"accuracy/accuracy [test]" = "candidate >= 0.5"\n[gate]\nbaseline = "b"\n')
    rules, settings = load_rules(p)
    assert rules[0].line == 2 and settings == {"baseline": "b"}
    with pytest.raises(UsageError, match=r"rules.toml:3: unknown \[gate\] setting 'x \[y\]' \(rules go before"):
        load_rules(_rules(tmp_path, '"accuracy/accuracy [test]" = "candidate >= 0.5"\n[gate]\n"x [y]" = "z"\n'))


def test_a_threshold_rule_on_the_temperature_record(tmp_path, capsys):
    """`temperature` is a record (suite calibration, the dev split), not a registered metric: the gate
    checks rules against the run's records, so thresholds on it work and typos get a suggestion."""
    run = make_run(tmp_path / "t", n=60, attacks=False)
    doc = json.loads((run / "results.json").read_text())
    for model, t in (("baseline", 1.7), ("aligned", 1.2)):
        doc["records"].append({"suite": "calibration", "split": "dev", "model": model, "metric": "temperature",
                               "value": t, "n": 60, "higher_is_better": None, "range": [0.0, None], "basis": None,
                               "temperature": None, "extra": {"method": "bounded"}})
    (run / "results.json").write_text(json.dumps(doc))
    ok = _rules(tmp_path, '"calibration/temperature [dev]" = "candidate <= 1.5"\n'
                          '"temperature [dev]" = "candidate <= baseline"\n')
    assert main(["gate", str(run), "--rules", str(ok), "--resamples", "20", "--max-resamples", "20"]) == 0
    typo = _rules(tmp_path, '\n"calibration/temprature [dev]" = "candidate <= 1.5"\n')
    assert main(["gate", str(run), "--rules", str(typo)]) == 2
    err = capsys.readouterr().err
    assert "rules.toml:2:" in err and "unknown metric 'temprature'" in err and "did you mean 'temperature'" in err
    paired = _rules(tmp_path, '"calibration/temperature [dev]" = "no significant drop at 0.05"\n')
    assert main(["gate", str(run), "--rules", str(paired), "--resamples", "20", "--max-resamples", "20"]) == 2
    assert "needs a paired test" in capsys.readouterr().err


def test_significance_rules_use_the_adjusted_p_unless_they_say_raw(tmp_path):
    run = make_run(tmp_path / "r", n=100, attacks=False)
    comp = compare(run, resamples=50, max_resamples=50)
    path = comp.write(run / "comparison.json")
    doc = json.loads(path.read_text())
    row = next(r for r in doc["comparison"]["records"] if r["metric"] == "accuracy" and r["split"] == "test")
    row.update(delta=-0.05, p_value_raw=0.01, p_value=0.2, adjust="holm")  # significant raw, not after Holm
    path.write_text(json.dumps(doc))
    rules = _rules(tmp_path, '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n'
                             '"accuracy/accuracy [dev]" = "no significant drop at 0.05"\n'
                             '"accuracy [test]" = "no significant drop at 0.05 (raw p)"\n')
    result = gate(run, rules, resamples=50, max_resamples=50)
    assert result.comparison == str(path)
    by_key = {(o.rule.key, o.rule.raw): o for o in result.outcomes}
    adjusted, raw = by_key[("accuracy/accuracy [test]", False)], by_key[("accuracy [test]", True)]
    assert adjusted.passed and "holm-adjusted p = 0.200: no significant change" in adjusted.message
    assert not raw.passed and "raw p = 0.010: significant drop" in raw.message
    assert parse_rule("a/accuracy [t]", "no significant regression at 0.01 (raw)", 1).raw
    assert result.exit_code == 1
