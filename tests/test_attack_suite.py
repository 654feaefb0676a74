"""End to end on tiny local models, offline: the adversarial suite, the one-off command, resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import sentences
from tests.tiny_attack import make_trained_tiny_model, write_attack_data

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "<script>alert(1)</script> great movie"
OFFLINE_RECIPES = ["deepwordbug", "pruthi", "pwws"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack-models")
    return {"baseline": make_trained_tiny_model(root, seed=0), "aligned": make_trained_tiny_model(root, seed=1)}


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    """Untrained tiny models (about 1 s): enough where the outcome itself is not under test."""
    from tests.tiny import make_tiny_pair

    return make_tiny_pair(tmp_path_factory.mktemp("attack-random-models"))


@pytest.fixture(autouse=True)
def _offline_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path_factory.getbasetemp() / "aligneval-cache"))
    from aligneval.attack import recipes

    recipes.network_available.cache_clear()
    yield
    recipes.network_available.cache_clear()


def _examples(n=40, extra=()):
    from aligneval.data import Examples

    rows = list(extra) + sentences(n, seed=11)
    return Examples(ids=[f"s{i}" for i in range(len(rows))], texts=[t for t, _ in rows],
                    labels=np.array([y for _, y in rows]), label_names=["neg", "pos"], source="fixture")


def _torch_predictions(folder, examples):
    """Predictions the way any engine would make them: plain transformers + torch, no aligneval code."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.suites.base import Predictions

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**tok(examples.texts, padding=True, return_tensors="pt")).logits
    return Predictions(ids=list(examples.ids), labels=examples.labels, probs=torch.softmax(logits, -1).numpy())


def _context(models, examples, run_dir, with_predictions=True):
    from aligneval.suites.base import ModelInfo, SplitInfo, SuiteContext

    preds = {(m, "test"): _torch_predictions(p, examples) for m, p in models.items()} if with_predictions else {}
    return SuiteContext(
        models={m: ModelInfo(m, str(p)) for m, p in models.items()},
        splits={"test": SplitInfo("test", "test", "fixture", examples.fingerprint, len(examples))},
        predictions=preds, run_dir=Path(run_dir), seed=0, examples={"test": examples},
        settings={"max_length": 64, "batch_size": 16})


def _log(run_dir, model, recipe):
    lines = (Path(run_dir) / "attacks" / model / f"{recipe}.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]]


def test_suite_offline_recipes_identical_examples_equal_denominators(models, tmp_path, capsys):
    from aligneval.attack import resources
    from aligneval.suites import get_suite

    # CI installs Debian's WordNet (apt-get install wordnet-base wordnet-sense-index); without it
    # pwws must fail with its one-line reason and the other recipes still run
    wordnet = resources.obtainable("wordnet") is None
    runnable = OFFLINE_RECIPES if wordnet else ["deepwordbug", "pruthi"]

    examples = _examples()
    ctx = _context(models, examples, tmp_path / "run")
    settings = {**get_suite("adversarial").defaults, "recipes": OFFLINE_RECIPES + ["textfooler"],
                "num_examples": 6, "query_budget": 60}
    out = get_suite("adversarial").fn(ctx, settings)
    recs = {(r.model, r.metric): r for r in out.records}

    # the headline list: correct by both models according to independently computed predictions
    correct = {m: ctx.predictions[(m, "test")].probs.argmax(1) == examples.labels for m in models}
    both = {examples.ids[i] for i in range(len(examples)) if correct["baseline"][i] and correct["aligned"][i]}
    if not wordnet:
        assert "apt-get install wordnet-base" in recs[("baseline", "pwws:accuracy_under_attack")].extra["unavailable"]
    for recipe in runnable:
        headers, ids = {}, {}
        for m in models:
            headers[m], rows = _log(tmp_path / "run", m, recipe)
            ids[m] = [r["id"] for r in rows]
            acc = recs[(m, f"{recipe}:accuracy_under_attack")]
            # denominators: equal for both models, stated, and what was asked
            assert acc.n == 6 and acc.extra["examples"] == 6 and acc.extra["complete"]
            assert "gold labels" in acc.extra["denominator"]
            # recompute from the log: failed / examples over the correct-by-all ids
            head = [r for r in rows if r["id"] in both]
            assert len(head) == 6
            assert acc.value == pytest.approx(sum(r["outcome"] == "failed" for r in head) / 6)
            succ = sum(r["outcome"] == "succeeded" for r in head)
            assert recs[(m, f"{recipe}:succeeded")].value == succ
            assert recs[(m, f"{recipe}:skipped")].value == 0  # all correct by construction
            assert all(r["num_queries"] <= 60 for r in rows)
            all_acc = recs[(m, f"all:{recipe}:accuracy_under_attack")]
            assert all_acc.n == len(rows)
            assert all_acc.value == pytest.approx(sum(r["outcome"] == "failed" for r in rows) / len(rows))
            assert headers[m]["query_budget"] == 60 and headers[m]["recipe"] == recipe
        # identical example ids for both models, asserted from the records and from the logs
        assert ids["baseline"] == ids["aligned"]
        for key in ("headline_ids_sha256", "attack_ids_sha256"):
            assert recs[("baseline", f"{recipe}:accuracy_under_attack")].extra[key] == \
                recs[("aligned", f"{recipe}:accuracy_under_attack")].extra[key]
        assert headers["baseline"]["examples_sha256"] == headers["aligned"]["examples_sha256"]
        assert sum(recs[(m, f"{recipe}:succeeded")].value for m in models) > 0  # the attacks do something

    # the network recipe fails with one line, leaves a record, and the rest of the run completed
    for m in models:
        rec = recs[(m, "textfooler:accuracy_under_attack")]
        assert rec.value is None and rec.extra["unavailable"].startswith("textfooler needs the network")
    err = capsys.readouterr().err
    assert sum("textfooler" in line for line in err.splitlines()) == 1
    assert "Traceback" not in err

    # adversarial examples for the report
    succeeded = [e for e in out.examples if e["outcome"] == "succeeded"]
    assert succeeded and {"model", "recipe", "id", "original", "perturbed", "original_prediction",
                          "perturbed_prediction", "original_confidence", "perturbed_confidence"} <= set(succeeded[0])
    assert all(e["original"] != e["perturbed"] and e["original_prediction"] != e["perturbed_prediction"]
               for e in succeeded)

    # a re-run with the same settings is read from disk: no attack is built, same records
    import aligneval.attack.runner as runner

    def no_build(*a, **k):
        raise AssertionError("a finished attack was run again")

    orig = runner.recipes.build
    runner.recipes.build = no_build
    try:
        again = get_suite("adversarial").fn(ctx, settings)
    finally:
        runner.recipes.build = orig
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in out.records]


def test_hostile_text_is_stored_verbatim(random_models, tmp_path):
    models = random_models
    from aligneval.suites import get_suite

    examples = _examples(n=3, extra=[(HOSTILE, 1), ('"quoted" & <b>bold</b> awful', 0)])
    ctx = _context(models, examples, tmp_path / "run", with_predictions=False)
    out = get_suite("adversarial").fn(ctx, {**get_suite("adversarial").defaults, "examples": "all",
                                            "num_examples": 5, "query_budget": 40})
    for m in models:
        _, rows = _log(tmp_path / "run", m, "deepwordbug")
        by_id = {r["id"]: r for r in rows}
        assert by_id["s0"]["original"] == HOSTILE
        assert by_id["s1"]["original"] == '"quoted" & <b>bold</b> awful'
    rows = [e for e in out.examples if e["id"] == "s0"]
    assert all(e["original"] == HOSTILE for e in rows)
    assert {r.extra["examples_mode"] for r in out.records} == {"all"}


def test_one_off_command_and_list(random_models, tmp_path, capsys):
    models = random_models
    from aligneval.cli import main

    data = write_attack_data(tmp_path / "data.jsonl", n=20)
    out = tmp_path / "out"
    code = main(["attack", "--model", f"baseline={models['baseline']}", "--model", f"aligned={models['aligned']}",
                 "--data", str(data), "--recipe", "deepwordbug", "--recipe", "bae", "-n", "3", "-q", "40",
                 "--examples", "all", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "attack_results.json").read_text())
    acc = {r["model"]: r for r in doc["records"] if r["metric"] == "deepwordbug:accuracy_under_attack"}
    assert acc["baseline"]["n"] == acc["aligned"]["n"] == 3
    assert all(r["value"] is None for r in doc["records"] if r["metric"].startswith("bae:"))
    ids = {m: [r["id"] for r in _log(out, m, "deepwordbug")[1]] for m in ("baseline", "aligned")}
    assert ids["baseline"] == ids["aligned"] and all(i.startswith("x") for i in ids["baseline"])  # the id column
    capsys.readouterr()
    assert main(["attack", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "deepwordbug" in listing and "textfooler" in listing and "network" in listing
    assert main(["attack", "--model", "a=b"]) == 2
    assert main(["attack", "--model", f"a={models['baseline']}", "--data", str(data), "-r", "deepwordbugg"]) == 2
    assert "did you mean 'deepwordbug'" in capsys.readouterr().err


def test_setup_reports_resources(tmp_path, capsys):
    from aligneval.attack import resources
    from aligneval.cli import main

    code = main(["attack", "--setup"])
    out = capsys.readouterr().out
    assert "stopwords" in out
    if resources.debian_wordnet_available():
        assert code == 0 and "ok       wordnet" in out
        # the WordNet nltk finds (built here, or earlier into another search path) has its lexnames
        assert (Path(resources.find_nltk("corpora/wordnet")) / "lexnames").exists()
    else:
        assert code == 5 and "apt-get install wordnet-base wordnet-sense-index" in out


def _cmd(models, data, out, recipe="pruthi", n=30):
    return [sys.executable, "-m", "aligneval", "attack", "--model", f"baseline={models['baseline']}",
            "--data", str(data), "--recipe", recipe, "-n", str(n), "-q", "80", "--examples", "all",
            "--out", str(out)]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(models, tmp_path):
    data = write_attack_data(tmp_path / "data.jsonl", n=30, seed=21)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    ref = subprocess.run(_cmd(models, data, tmp_path / "ref"), env=env, capture_output=True, text=True, cwd=ROOT)
    assert ref.returncode == 0, ref.stderr[-2000:]

    out = tmp_path / "killed"
    log = out / "attacks" / "baseline" / "pruthi.jsonl"
    proc = subprocess.Popen(_cmd(models, data, out), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 4:  # header + 3 examples
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the attack finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = log.read_text()
    done_before = [json.loads(x)["id"] for x in before.splitlines()[1:] if x.endswith("}")]
    assert 3 <= len(done_before) < 30

    again = subprocess.run(_cmd(models, data, out), env=env, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    after = log.read_text().splitlines()
    rows = [json.loads(x) for x in after[1:]]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 30  # nothing redone, nothing lost
    assert ids[: len(done_before)] == done_before  # the finished examples were kept, not re-attacked
    assert "\n".join(after[: len(done_before) + 1]) == "\n".join(before.splitlines()[: len(done_before) + 1])

    def strip(rs):
        return {r["id"]: {k: v for k, v in r.items() if k != "seconds"} for r in rs}

    _, ref_rows = _log(tmp_path / "ref", "baseline", "pruthi")
    assert strip(rows) == strip(ref_rows)
    ref_doc = json.loads((tmp_path / "ref" / "attack_results.json").read_text())
    doc = json.loads((out / "attack_results.json").read_text())
    assert doc["records"] == ref_doc["records"]


def test_time_budget_leaves_the_rest_for_a_rerun(random_models, tmp_path, capsys):
    from aligneval.suites import get_suite

    examples = _examples(n=4)
    ctx = _context({"baseline": random_models["baseline"]}, examples, tmp_path / "run", with_predictions=False)
    base = {**get_suite("adversarial").defaults, "examples": "all", "num_examples": 4, "query_budget": 20}
    cut = get_suite("adversarial").fn(ctx, {**base, "time_budget_s": 1e-9})
    acc = {r.metric: r for r in cut.records}["deepwordbug:accuracy_under_attack"]
    assert acc.extra["complete"] is False and acc.extra["not_attacked"] == 4 - acc.n
    assert "time budget reached" in capsys.readouterr().err
    full = get_suite("adversarial").fn(ctx, base)  # same outcome settings: continues the same log
    acc = {r.metric: r for r in full.records}["deepwordbug:accuracy_under_attack"]
    assert acc.extra["complete"] is True and acc.n == 4
    _, rows = _log(tmp_path / "run", "baseline", "deepwordbug")
    assert sorted(r["id"] for r in rows) == sorted(examples.ids)
