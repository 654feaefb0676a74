"""End to end: two tiny local models on a local fixture -> results.json + predictions, checked
against independent references; a second run re-uses the cache; every bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest
from netcal.metrics import ECE
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from aligneval import predict
from aligneval.cli import main
from aligneval.metrics import scale_probs
from aligneval.results import dumps_records, load_results, results_schema, write_json_atomic
from aligneval.runner import run
from tests.tiny import make_tiny_pair
from tests.tiny_eval import SPEC, write_eval_fixture, write_rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_tiny_pair(root)


@pytest.fixture(autouse=True)
def shared_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "shared-cache"))


@pytest.fixture
def spec_path(tmp_path):
    return write_eval_fixture(tmp_path / "data")


def model_args(models):
    return [arg for name, path in models.items() for arg in ("--model", f"{name}={path}")]


def test_end_to_end_against_references(models, spec_path, tmp_path):
    out = tmp_path / "run"
    results = run(spec_path, {k: str(v) for k, v in models.items()}, out, progress=False)
    doc = json.loads((out / "results.json").read_text())
    jsonschema.validate(doc, results_schema())
    assert set(doc["models"]) == {"baseline", "aligned"} and set(doc["data"]) == {"dev", "test", "shifted"}
    assert doc["environment"]["packages"]["torch"] and doc["models"]["baseline"]["weights_sha256"]

    for model in models:
        for split in ("dev", "test", "shifted"):
            table = pq.read_table(out / "predictions" / model / f"{split}.parquet").to_pydict()
            assert len(table["id"]) == 48 == len(set(table["id"])) == doc["data"][split]["size"]
            assert set(table) >= {"id", "label", "probs", "text_sha256", "text"}
        for split in ("test", "shifted"):
            table = pq.read_table(out / "predictions" / model / f"{split}.parquet").to_pydict()
            probs, labels = np.array(table["probs"]), np.array(table["label"])
            conf, hit = probs.max(1), (probs.argmax(1) == labels).astype(int)
            # ECE straight from netcal on the parquet (top-label confidence vs correctness)
            assert results.value("ece@15", split, model, "calibration") == pytest.approx(
                ECE(bins=15).measure(conf, hit), abs=1e-12)
            assert results.value("ece@10", split, model, "calibration") == pytest.approx(
                ECE(bins=10).measure(conf, hit), abs=1e-12)
            assert results.value("accuracy", split, model, "accuracy") == pytest.approx(accuracy_score(labels, probs.argmax(1)))
            assert results.value("nll", split, model, "calibration") == pytest.approx(log_loss(labels, probs, labels=[0, 1]))
            if 0 < hit.sum() < len(hit):
                assert results.value("auroc_error", split, model) == pytest.approx(roc_auc_score(hit, conf))
            # the scaled record is the metric on the parquet with the recorded temperature
            ts = results.get("ts:ece@15", split, model)
            scaled = scale_probs(probs, ts.temperature)
            assert ts.value == pytest.approx(ECE(bins=15).measure(scaled.max(1), (scaled.argmax(1) == labels).astype(int)),
                                             abs=1e-12)
        # temperature fitted on dev only: refit on the dev parquet reproduces it
        from aligneval.metrics import TemperatureScaler

        dev = results.predictions(model, "dev")
        assert results.value("temperature", "dev", model) == pytest.approx(
            TemperatureScaler(input="probs").fit(dev.probs, dev.labels).temperature_)
        drop = results.get("drop:accuracy", "shifted", model)
        assert drop.value == pytest.approx(results.value("accuracy", "test", model, "accuracy")
                                           - results.value("accuracy", "shifted", model, "ood"))
        msp = results.get("msp_auroc_ood", "shifted", model)
        conf_in = results.predictions(model, "test").probs.max(1)
        conf_out = results.predictions(model, "shifted").probs.max(1)
        assert msp.value == pytest.approx(roc_auc_score(np.r_[np.ones(48), np.zeros(48)], np.r_[conf_in, conf_out]))
    names = {(c.name, c.split) for c in results.curves}
    assert ("reliability", "test") in names and ("risk_coverage", "shifted") in names
    assert all(r.basis == "predictions" for r in results.records if r.metric in ("ece@15", "ts:ece@15", "brier"))


def test_second_run_reuses_cache_without_forward(models, spec_path, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = run(spec_path, {k: str(v) for k, v in models.items()}, out, progress=False)

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran on a cached prediction")

    monkeypatch.setattr(predict, "forward", no_model)
    monkeypatch.setattr(predict, "load_model", no_model)
    second = run(spec_path, {k: str(v) for k, v in models.items()}, out, progress=False)
    assert dumps_records(second.records) == dumps_records(first.records)
    # a fresh run folder is served from the shared cache, also without a forward pass
    third = run(spec_path, {k: str(v) for k, v in models.items()}, tmp_path / "elsewhere", progress=False)
    assert dumps_records(third.records) == dumps_records(first.records)
    # and via the CLI
    assert main(["run", str(spec_path), *model_args(models), "--out", str(out), "--no-progress"]) == 0
    assert dumps_records(load_results(out).records) == dumps_records(first.records)


def test_library_upgrade_misses_the_shared_cache(models, spec_path, tmp_path, monkeypatch):
    """The cache key holds the torch, transformers and tokenizers versions: after an upgrade a shared
    cache is not silently reused (every split is predicted again); with the same versions it is."""
    import tokenizers
    import torch
    import transformers

    assert predict.runtime_versions() == {"torch": torch.__version__, "transformers": transformers.__version__,
                                          "tokenizers": tokenizers.__version__}
    calls = []
    real_forward = predict.forward

    def counting(model, batch):
        calls.append(len(batch["input_ids"]))
        return real_forward(model, batch)

    monkeypatch.setattr(predict, "forward", counting)
    sources = {k: str(v) for k, v in models.items()}
    first = run(spec_path, sources, tmp_path / "one", progress=False)
    predicted = sum(calls)
    assert predicted == 2 * 3 * 48  # two models, three splits of 48
    run(spec_path, sources, tmp_path / "two", progress=False)  # same versions: all from the shared cache
    assert sum(calls) == predicted
    for upgraded in ("torch", "transformers", "tokenizers"):
        before = sum(calls)
        versions = {**predict.runtime_versions(), upgraded: "99.0.0"}
        with monkeypatch.context() as m:
            m.setattr(predict, "runtime_versions", lambda v=versions: v)
            again = run(spec_path, sources, tmp_path / "one", progress=False)  # even in the same run folder
        assert sum(calls) - before == predicted, upgraded
        assert dumps_records(again.records) == dumps_records(first.records)  # same numbers, recomputed
    key_one = json.loads(pq.read_schema(tmp_path / "two" / "predictions" / "baseline" / "test.parquet")
                         .metadata[b"aligneval"])["key"]
    key_now = json.loads(pq.read_schema(tmp_path / "one" / "predictions" / "baseline" / "test.parquet")
                         .metadata[b"aligneval"])["key"]
    assert key_one != key_now  # the last run rewrote the folder under the "upgraded" key


def test_cli_run_and_suite_selection(models, spec_path, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["run", str(spec_path), *model_args(models), "--out", str(out), "--suite", "accuracy", "--no-progress"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    results = load_results(out)
    assert {r.suite for r in results.records} == {"accuracy"}


def test_spec_models_table_and_overwrite_guard(models, tmp_path):
    spec = write_eval_fixture(tmp_path / "d", spec=SPEC + f'\n[models]\nbase = "{models["baseline"]}"\n')
    out = tmp_path / "run"
    assert set(run(spec, None, out, progress=False).doc["models"]) == {"base"}
    assert main(["run", str(spec), "--model", f"other={models['aligned']}", "--out", str(out), "--no-progress"]) == 2
    assert main(["run", str(spec), "--model", f"other={models['aligned']}", "--out", str(out), "--no-progress",
                 "--overwrite"]) == 0


def test_atomic_write_leaves_nothing_on_error(tmp_path, monkeypatch):
    target = tmp_path / "results.json"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(RuntimeError):
        write_json_atomic(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_load_results_errors(tmp_path):
    from aligneval.errors import ArtifactError

    with pytest.raises(ArtifactError, match="results not found"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": "1.0"}))
    with pytest.raises(ArtifactError, match="invalid results document"):
        load_results(tmp_path)


# ---------- bad input: one line, file + key, non-zero exit, no results.json --------------------

def _bad_cases(models, root: Path):
    """(label, argv, expected exit code, regex the one-line message must match)."""
    spec = write_eval_fixture(root / "ok")
    data = spec.parent
    cases = []

    def variant(name: str, text: str) -> Path:
        path = data / f"{name}.toml"
        path.write_text(text)
        return path

    broken = SPEC.replace('role = "ood"', 'role = = "ood"')
    line = broken.splitlines().index('role = = "ood"') + 1
    cases.append(("malformed toml", variant("malformed", broken), None, 2,
                  rf"malformed\.toml: malformed TOML: .*\(at line {line}, column"))
    cases.append(("unknown suite in spec", variant("suite", SPEC.replace("[suites.ood]", "[suites.oood]")), None, 2,
                  r"suite\.toml: \[suites\.oood\]: unknown suite 'oood' \(did you mean 'ood'\?\)"))
    cases.append(("unknown suite on cli", spec, ["--suite", "acuracy"], 2, r"^error: --suite acuracy: unknown suite 'acuracy' \(did you mean 'accuracy'\?\)"))
    cases.append(("unknown metric", variant("metric", SPEC.replace("[suites.accuracy]", '[suites.accuracy]\nmetrics = ["acc"]')),
                  None, 2, r"metric\.toml: \[suites\.accuracy\] unknown metric 'acc'"))
    cases.append(("missing split file", variant("missing", SPEC.replace('path = "ood.jsonl"', 'path = "gone.jsonl"')), None, 3,
                  r"missing\.toml: \[splits\.shifted\] path: data file not found"))
    cases.append(("no dev with temperature", variant("nodev", SPEC.replace('role = "dev"', 'role = "train"')), None, 2,
                  r"nodev\.toml: \[suites\.calibration\] temperature: .*role 'dev'"))
    (data / "empty.csv").write_text("id,text,label\n")
    cases.append(("empty split", variant("empty", SPEC.replace('path = "ood.jsonl"', 'path = "empty.csv"')), None, 4,
                  r"empty\.toml: \[splits\.shifted\]: .*empty\.csv: the split is empty"))
    rows = [{"id": f"e{i}", "text": t, "label": i % 2} for i, t in enumerate(["good fun", "", None, "awful dull"])]
    write_rows(data / "nulls.jsonl", rows)
    cases.append(("null texts rejected", variant("nulls", SPEC.replace('path = "ood.jsonl"', 'path = "nulls.jsonl"')), None, 4,
                  r"nulls\.toml: \[splits\.shifted\]: .*2 null or empty text"))
    write_rows(data / "dupes.jsonl", [{"id": "same", "text": "good", "label": 1}, {"id": "same", "text": "bad", "label": 0}])
    cases.append(("duplicate ids", variant("dupes", SPEC.replace('path = "ood.jsonl"', 'path = "dupes.jsonl"')), None, 4,
                  r"dupes\.toml: \[splits\.shifted\]: .*duplicate id\(s\) \['same'\]"))
    write_rows(data / "outside.jsonl", [{"id": "a", "text": "good", "label": 1}, {"id": "b", "text": "bad", "label": 5}])
    cases.append(("labels outside model set", variant("outside", SPEC.replace('path = "ood.jsonl"', 'path = "outside.jsonl"')),
                  None, 4, r"outside\.toml: \[splits\.shifted\]: .*label id\(s\) \[5\] are outside the model's label set"))
    write_rows(data / "strings.jsonl", [{"id": "a", "text": "good", "label": "pos"}, {"id": "b", "text": "bad", "label": "neg"}])
    cases.append(("string labels vs LABEL_i", variant("strings", SPEC.replace('path = "ood.jsonl"', 'path = "strings.jsonl"')),
                  None, 4, r"strings\.toml: \[splits\.shifted\]: .*\['neg', 'pos'\] do not match the model's label set "
                           r"\['LABEL_0', 'LABEL_1'\]; give a label map"))
    noweights = root / "noweights"
    shutil.copytree(models["baseline"], noweights)
    (noweights / "model.safetensors").unlink()
    cases.append(("model without weights", spec, ["--model", f"x={noweights}"], 3, r"noweights: no model weights"))
    pickled = root / "pickled"
    shutil.copytree(noweights, pickled)
    from transformers import AutoModelForSequenceClassification

    import torch  # transformers 5 ignores safe_serialization=False: pickle by hand

    from aligneval.quiet import transformers_bars_off

    with transformers_bars_off():  # transformers 5's "Loading weights" bar would precede the errors read below;
        # the bars are put back as they were (conftest's HF_HUB_DISABLE_PROGRESS_BARS leaves them off), so
        # later tests' one-line errors are not preceded by "Writing model shards" either
        torch.save(AutoModelForSequenceClassification.from_pretrained(models["baseline"]).state_dict(),
                   pickled / "pytorch_model.bin")
    cases.append(("bin-only checkpoint", spec, ["--model", f"x={pickled}"], 3, r"pickled: only a pickled checkpoint"))
    cases.append(("missing model folder", spec, ["--model", f"x={root}/no/such/model"], 3, r"model folder not found"))
    cases.append(("bad --model", spec, ["--model", "justapath"], 2, r"expected NAME=PATH"))
    return cases, pickled, data


def test_bad_inputs_one_line_no_results(models, tmp_path, capsys):
    cases, _, _ = _bad_cases(models, tmp_path)
    default_models = model_args(models)
    for i, (label, spec, extra, code, pattern) in enumerate(cases):
        out = tmp_path / f"out{i}"
        argv = ["run", str(spec), "--out", str(out), "--no-progress"]
        argv += extra if extra and extra[0] == "--model" else default_models + (extra or [])
        got = main(argv)
        err = capsys.readouterr().err
        assert got == code, f"{label}: exit {got}, stderr {err!r}"
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, f"{label}: {err!r}"
        import re

        assert re.search(pattern, err), f"{label}: {err!r} does not match {pattern!r}"
        assert not (out / "results.json").exists(), label


def test_opt_ins_make_the_same_inputs_work(models, tmp_path, capsys):
    _, pickled, data = _bad_cases(models, tmp_path)
    spec = data / "ok.toml"
    spec.write_text(SPEC.replace('path = "ood.jsonl"', 'path = "nulls.jsonl"\non_empty = "skip"'))
    assert main(["run", str(spec), "--model", f"x={pickled}", "--allow-pickle", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert "shifted: skipped 2 null or empty text(s)" in capsys.readouterr().out
    results = load_results(tmp_path / "out")
    assert results.doc["data"]["shifted"]["skipped"] == 2 and results.doc["data"]["shifted"]["size"] == 2
    mapped = data / "mapped.toml"
    mapped.write_text(SPEC.replace('path = "ood.jsonl"', 'path = "strings.jsonl"\nlabel_map = { neg = 0, pos = 1 }'))
    results = run(mapped, {"x": str(models["baseline"])}, tmp_path / "out2", progress=False)
    assert results.predictions("x", "shifted").labels.tolist() == [1, 0]


def test_suites_are_pure_functions_of_predictions(tmp_path):
    """Suites on a synthetic context (no model): drop orientation, undefined values, curve thinning."""
    from aligneval.suites import get_suite
    from aligneval.suites.base import ModelInfo, Predictions, SplitInfo, SuiteContext
    from aligneval.metrics import get_metric, softmax

    rng = np.random.default_rng(0)

    def preds(n, skill, sharp):
        labels = rng.integers(0, 2, n)
        logits = rng.normal(size=(n, 2))
        logits[np.arange(n), labels] += skill
        return Predictions([f"i{i}" for i in range(n)], labels, softmax(logits * sharp))

    p = {("m", "dev"): preds(300, 2, 1), ("m", "test"): preds(300, 2, 1), ("m", "far"): preds(300, 0.3, 3)}
    perfect = p[("m", "test")]
    p[("m", "test")] = Predictions(perfect.ids, perfect.probs.argmax(1), perfect.probs)  # every prediction right
    ctx = SuiteContext(models={"m": ModelInfo("m", "x")},
                       splits={s: SplitInfo(s, r, s, "fp", 300) for s, r in (("dev", "dev"), ("test", "test"), ("far", "ood"))},
                       predictions=p, run_dir=tmp_path)
    ood = get_suite("ood")
    out = ood.fn(ctx, dict(ood.defaults))
    by = {r.metric: r for r in out.records}
    ece_in = get_metric("ece@15")(p[("m", "test")].probs, p[("m", "test")].labels)
    ece_out = get_metric("ece@15")(p[("m", "far")].probs, p[("m", "far")].labels)
    assert by["drop:ece@15"].value == pytest.approx(ece_out - ece_in) and by["drop:ece@15"].higher_is_better is False
    assert by["drop:accuracy"].value == pytest.approx(1.0 - by["accuracy"].value)
    unc = get_suite("uncertainty")
    out = unc.fn(ctx, {**unc.defaults, "curve_points": 10})
    test_err = [r for r in out.records if r.metric == "auroc_error" and r.split == "test"][0]
    assert test_err.value is None and "undefined" in test_err.extra
    curve = [c for c in out.curves if c.split == "far"][0].data
    assert len(curve["coverage"]) <= 11 and curve["coverage"][-1] == 1.0 and curve["points_total"] > 10
