"""`--log-to mlflow|wandb`: every value read back from the tracker's own store equals results.json,
comparison.json and align's train_log.jsonl. MLflow through `MlflowClient` on a real local SQLite store;
W&B from the offline run's transaction log (tests/wandb_offline.py). A missing extra or an unreachable
server is one line and exit 5, after the command's own files are written."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from aligneval.cli import main
from tests.fixtures_results import make_run
from tests.tiny import make_tiny_model, write_fixture
from tests.tiny_eval import write_eval_fixture
from tests.wandb_offline import read_run

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytest.importorskip("sqlalchemy")

REPO = Path(__file__).resolve().parent.parent
UNSAFE = re.compile(r"[^A-Za-z0-9_.\- /]")  # the documented key alphabet (docs/integrations.md)


def key(*parts: str) -> str:
    return "/".join(UNSAFE.sub("_", p) for p in parts)


@pytest.fixture(autouse=True)
def _local_trackers(monkeypatch, tmp_path):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def _client(folder: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///" + str((folder / "mlflow" / "mlflow.db").resolve()))
    experiment = client.get_experiment_by_name("aligneval")
    return client, client.search_runs([experiment.experiment_id])


def _numeric_records(run: Path) -> dict[str, float]:
    doc = json.loads((run / "results.json").read_text())
    out = {key(r["suite"], r["metric"], r["split"], r["model"]): r["value"] for r in doc["records"]
           if r["value"] is not None}
    assert len(out) == sum(r["value"] is not None for r in doc["records"])  # the keys are distinct
    return out


def _comparison_rows(report: Path) -> list[dict]:
    return json.loads((report / "comparison.json").read_text())["comparison"]["records"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """`aligneval run ... --log-to mlflow --log-to wandb` then `report ... --log-to mlflow --log-to wandb`
    on two tiny models (the real commands, the real stores)."""
    tmp = tmp_path_factory.mktemp("tracked")
    env = {"WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(tmp / "wc"), "WANDB_CACHE_DIR": str(tmp / "wcache")}
    old = {k: os.environ.get(k) for k in [*env, "MLFLOW_TRACKING_URI", "WANDB_API_KEY"]}
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("WANDB_API_KEY", None)
    try:
        spec = write_eval_fixture(tmp / "data", n=40)
        base, twin = make_tiny_model(tmp / "a", seed=0), make_tiny_model(tmp / "b", seed=1)
        run, report = tmp / "run", tmp / "report"
        assert main(["run", str(spec), "--model", f"baseline={base}", "--model", f"aligned={twin}", "--out", str(run),
                     "--no-progress", "--log-to", "mlflow", "--log-to", "wandb"]) == 0
        assert main(["report", str(run), "--out", str(report), "--resamples", "200", "--format", "md",
                     "--log-to", "mlflow", "--log-to", "wandb"]) == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return run, report


@pytest.mark.slow
def test_mlflow_holds_every_record_the_comparison_and_the_artifacts(evaluated):
    run, report = evaluated
    client, runs = _client(run)
    [logged] = runs  # `report` added to the run `run` started (tracking.json)
    metrics = logged.data.metrics
    records = _numeric_records(run)
    assert {k: metrics[k] for k in records} == records  # exact floats
    assert set(metrics) - set(records) == {k for k in metrics if k.startswith("compare/")}
    tags = logged.data.tags
    for row in _comparison_rows(report):
        base = key("compare", "aligned", row["suite"], row["metric"], row["split"])
        assert tags[f"{base}/verdict"] == row["verdict"]
        for field in ("baseline", "candidate", "delta", "ci_low", "ci_high", "p_value"):
            assert metrics.get(f"{base}/{field}") == row[field]
    params = logged.data.params
    doc = json.loads((run / "results.json").read_text())
    assert params["spec.name"] == doc["spec"]["name"] and params["seed"] == str(doc["seed"])
    files = {f.path for f in client.list_artifacts(logged.info.run_id)}
    assert {"report.md", "comparison.json", "results.json", "comparison_table.json"} <= files
    table = json.loads(Path(client.download_artifacts(logged.info.run_id, "comparison_table.json")).read_text())
    assert [(r["metric"], r["split"], r["delta"], r["verdict"]) for r in table] == \
        [(r["metric"], r["split"], r["delta"], r["verdict"]) for r in _comparison_rows(report)]
    stored = Path(client.download_artifacts(logged.info.run_id, "comparison.json")).read_bytes()
    assert stored == (report / "comparison.json").read_bytes()


@pytest.mark.slow
def test_wandb_offline_runs_hold_the_same_values(evaluated):
    run, report = evaluated
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 2  # one per command, grouped by the run's name
    after_run, after_report = (read_run(f) for f in folders)
    records = _numeric_records(run)
    for logged in (after_run, after_report):
        assert {k: logged.summary[k] for k in records} == records
        assert logged.group == run.name and logged.config["spec.name"] == "tiny-eval"
    assert after_run.job_type == "run" and after_report.job_type == "report"
    for row in _comparison_rows(report):
        base = key("compare", "aligned", row["suite"], row["metric"], row["split"])
        assert after_report.summary[f"{base}/verdict"] == row["verdict"]
        for field in ("delta", "ci_low", "ci_high"):
            assert after_report.summary.get(f"{base}/{field}") == row[field]
    assert {"report.md", "comparison.json", "results.json"} <= set(after_report.files)
    saved = folders[1] / "files" / "comparison.json"
    assert saved.read_bytes() == (report / "comparison.json").read_bytes() and not saved.is_symlink()


@pytest.mark.slow
def test_align_logs_one_child_run_per_trained_model_with_its_curve(tmp_path):
    model, train = make_tiny_model(tmp_path), write_fixture(tmp_path, n=32)
    out = tmp_path / "pair"
    assert main(["align", "--model", str(model), "--train", str(train), "--out", str(out), "--variant", "mmd",
                 "--lambda", "0.1,1", "--seeds", "13,21", "--max-steps", "3", "--batch-size", "8", "--no-progress",
                 "--log-to", "mlflow", "--log-to", "wandb"]) == 0
    folders = sorted(p.parent for p in out.glob("seed-*/*/alignment.json"))
    assert len(folders) == 6  # 2 seeds × (baseline + 2 twins)
    client, runs = _client(out)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 6
    by_name = {r.info.run_name: r for r in children}
    offline = [read_run(f) for f in sorted((out / "wandb").glob("offline-run-*"))]
    assert len(offline) == 7 and {o.group for o in offline} == {out.name}
    for folder in folders:
        card = json.loads((folder / "alignment.json").read_text())
        log = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines() if x.strip()]
        child = by_name[f"{folder.name} (seed {card['seed']})"]
        assert child.data.params["lambda"] == str(card["lambda"]) and child.data.params["seed"] == str(card["seed"])
        history = client.get_metric_history(child.info.run_id, "task_loss")
        assert [(h.step, h.value) for h in sorted(history, key=lambda h: h.step)] == \
            [(r["step"], r["task_loss"]) for r in log]
        if card["role"] == "aligned":
            layers = client.get_metric_history(child.info.run_id, "alignment_loss/layer_0")
            assert [h.value for h in sorted(layers, key=lambda h: h.step)] == \
                [r["alignment_loss_layers"][0] for r in log]
        [w] = [o for o in offline if o.config.get("run_key") == card["run_key"] and o.config.get("seed") == str(card["seed"])]
        assert [(h["_step"], h["task_loss"]) for h in w.history] == [(r["step"], r["task_loss"]) for r in log]


# ----------------------------------------------------------------------------------------------
# failures: one line, exit 5, nothing lost


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("fail") / "run", n=60, attacks=False)


def _report(run: Path, out: Path, tracker: str, capsys) -> tuple[int, list[str]]:
    code = main(["report", str(run), "--out", str(out), "--resamples", "50", "--format", "md", "--log-to", tracker])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [x for x in err.splitlines() if x.startswith("error:")]


@pytest.mark.parametrize("tracker, env, says", [
    ("mlflow", {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, "MLflow tracking server http://127.0.0.1:9 is unreachable"),
    ("wandb", {"WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40},
     "W&B server http://127.0.0.1:9 is unreachable"),
])
def test_unreachable_server_is_one_line_exit_5_after_the_report(small_run, tmp_path, capsys, monkeypatch, tracker,
                                                                 env, says):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "report"
    code, errors = _report(small_run, out, tracker, capsys)
    assert code == 5 and len(errors) == 1 and says in errors[0]
    assert (out / "report.md").is_file() and (out / "comparison.json").is_file()  # nothing lost


@pytest.mark.parametrize("tracker, module, says", [("mlflow", "mlflow", "MLflow (mlflow-skinny)"),
                                                   ("mlflow", "sqlalchemy", "sqlalchemy"),
                                                   ("wandb", "wandb", "wandb")])
def test_missing_extra_is_one_line_exit_5_after_the_report(small_run, tmp_path, capsys, monkeypatch, tracker,
                                                           module, says):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError, as when not installed
    out = tmp_path / "report"
    code, errors = _report(small_run, out, tracker, capsys)
    assert code == 5 and errors == [
        f"error: --log-to {tracker} needs {says}: pip install 'aligneval[{tracker}]' (your results are written; "
        "re-run the command with --log-to to log them)"]
    assert (out / "report.md").is_file()


def test_unknown_tracker_is_a_usage_error_before_any_work(small_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(small_run), "--out", str(out), "--log-to", "mlfow"]) == 2
    assert "did you mean 'mlflow'" in capsys.readouterr().err and not (out / "report.md").exists()


def test_mlflow_tracking_uri_is_honoured_and_seeds_become_child_runs(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from aligneval import tracking
    from aligneval.compare import load
    from aligneval.tracking.payload import for_run

    run = make_run(tmp_path / "run", n=60, seeds=[13, 42], attacks=False)
    monkeypatch.chdir(tmp_path)  # a store without an artifact root puts artifacts in ./mlruns (MLflow's default)
    uri = "sqlite:///" + str(tmp_path / "elsewhere.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-x")
    [line] = tracking.publish(["mlflow"], for_run(load(run)), tmp_path / "state")
    assert uri in line and not (tmp_path / "state" / "mlflow").exists() and (tmp_path / "mlruns").is_dir()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("team-x").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    records = _numeric_records(run)
    assert parent.data.metrics == records
    assert set(children) == {"baseline@13", "aligned@13", "baseline@42", "aligned@42"}
    for name, child in children.items():
        suffix = "/" + key(name)
        assert child.data.metrics == {k[:-len(suffix)]: v for k, v in records.items() if k.endswith(suffix)}
        assert child.data.params["model"] == name
