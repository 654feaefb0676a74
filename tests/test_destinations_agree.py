"""The card, the tracker and the gate say the same thing: for every row the gate checks, the model card's
metric args, MLflow's metrics and verdict tag and the gate's annotation state the Δ, interval and verdict
of the one comparison.json the report wrote."""

from __future__ import annotations

import json
import re

import pytest

from aligneval.cli import main
from aligneval.formatting import fmt_ci, fmt_delta
from tests.fixtures_results import make_run

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")

RULES = """\
"accuracy/accuracy [test]"  = "no significant drop at 0.05"
"calibration/nll [test]"    = "no significant drop at 0.05"
"calibration/ece@15 [test]" = "candidate <= baseline"
"""


@pytest.mark.slow
def test_card_tracker_and_gate_state_one_value_and_one_verdict(tmp_path, capsys, monkeypatch):
    from huggingface_hub import ModelCard
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # more accurate and under-confident: accuracy better, NLL and ECE worse, so rules both pass and fail
    run = make_run(tmp_path / "run", n=400, models={"baseline": (1.2, 1.0), "aligned": (2.6, 0.5)}, attacks=False)
    report = tmp_path / "report"
    assert main(["report", str(run), "--out", str(report), "--resamples", "300", "--format", "md",
                 "--model-cards", "--log-to", "mlflow"]) == 0
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    capsys.readouterr()
    code = main(["gate", str(run), "--rules", str(rules), "--comparison", str(report / "comparison.json"),
                 "--resamples", "300"])
    out = capsys.readouterr().out
    assert "comparison: " + str(report / "comparison.json") in out  # the gate read the report's file

    rows = {(r["suite"], r["split"], r["metric"]): r
            for r in json.loads((report / "comparison.json").read_text())["comparison"]["records"]}
    card = {(e.metric_args["suite"], e.dataset_split, e.metric_type): e
            for e in ModelCard.load(report / "cards" / "aligned" / "README.md").data.eval_results}
    client = MlflowClient("sqlite:///" + str(run / "mlflow" / "mlflow.db"))
    [logged] = client.search_runs([client.get_experiment_by_name("aligneval").experiment_id])
    annotations = [line for line in out.splitlines() if line.startswith("::error")]
    failed = set()
    for line in annotations:
        failed.add(re.search(r"title=aligneval gate regression%3A (\S+ \[\w+\])::", line).group(1))

    verdicts = []
    for key, rule in (("accuracy", "accuracy/accuracy [test]"), ("nll", "calibration/nll [test]"),
                      ("ece@15", "calibration/ece@15 [test]")):
        suite = "accuracy" if key == "accuracy" else "calibration"
        row = rows[(suite, "test", key)]
        [paired] = card[(suite, "test", key)].metric_args["comparisons"]
        assert card[(suite, "test", key)].metric_value == row["candidate"]
        base = f"compare/aligned/{suite}/{key.replace('@', '_')}/test"
        for field in ("delta", "ci_low", "ci_high"):
            assert paired[field] == logged.data.metrics[f"{base}/{field}"] == row[field]
        assert paired["verdict"] == logged.data.tags[f"{base}/verdict"] == row["verdict"]
        verdicts.append(row["verdict"])
        if rule in failed:
            [line] = [x for x in annotations if rule in x]
            assert f"Δ {fmt_delta(row['delta'])} (95%25 CI {fmt_ci(row['ci_low'], row['ci_high'])})" in line
        if "significant" in RULES.split(rule)[1].splitlines()[0]:  # a significance rule fails iff "worse"
            assert (rule in failed) == (row["verdict"] == "worse")
    assert verdicts[0] == "better" and "worse" in verdicts[1:]  # the fixture exercises both outcomes
    assert code == 1 and failed
