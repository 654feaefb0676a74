"""Each recipe's records follow its goal function: a flip-label recipe (deepwordbug) reports accuracy
under attack; input reduction (keep the prediction while deleting words, TextAttack's "Maximized"
results) reports how many words go with the prediction kept, and never accuracy or success rate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from aligneval.attack import goals, summary

from tests.scripts import load_script
from tests.tiny import sentences
from tests.tiny_attack import make_trained_tiny_model

needs_textattack = pytest.mark.skipif(importlib.util.find_spec("textattack") is None,
                                      reason="TextAttack is not installed (it needs transformers < 5)")

N = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_trained_tiny_model(tmp_path_factory.mktemp("goal-model"), seed=0)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path_factory.getbasetemp() / "aligneval-cache"))


def _data(path: Path) -> Path:
    rows = sentences(24, seed=5)
    path.write_text("".join(json.dumps({"id": f"g{i}", "text": t, "label": y}) + "\n" for i, (t, y) in enumerate(rows)))
    return path


def _hf_predict(folder, texts):
    """The model's labels by plain transformers (no aligneval code): the reference for 'kept'."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    net = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return net(**tok(list(texts), padding=True, return_tensors="pt")).logits.argmax(-1).numpy()


def _rows(out: Path, recipe: str) -> list[dict]:
    lines = (out / "attacks" / "m" / f"{recipe}.jsonl").read_bytes().split(b"\n")
    return [json.loads(x) for x in lines[1:] if x.strip()]


@needs_textattack
@pytest.mark.parametrize("recipe", ["deepwordbug", "pruthi", "input-reduction"])
def test_goal_table_matches_what_textattack_builds(model, recipe):
    from aligneval.attack.recipes import build
    from aligneval.attack.wrapper import BatchedClassifier, load_classifier

    net, tok = load_classifier(str(model))
    attack = build(recipe, BatchedClassifier(net, tok, 32, 8))
    assert type(attack.goal_function).__name__ in goals.goal_of(recipe).textattack_goals


@needs_textattack
def test_flip_label_recipe_reports_accuracy_under_attack(model, tmp_path):
    from aligneval.attack.runner import attack

    out = attack({"m": str(model)}, str(_data(tmp_path / "d.jsonl")), tmp_path / "o", recipes=["deepwordbug"],
                 num_examples=N, query_budget=60, examples="all", max_length=32)
    recs = {r.metric: r for r in out.records}
    rows = [r for r in _rows(tmp_path / "o", "deepwordbug")]
    assert {r["outcome"] for r in rows} <= {"succeeded", "failed", "skipped"}
    # from the log, independently: a succeeded row flipped the prediction away from the gold label
    pred = _hf_predict(model, [r["perturbed"] for r in rows])
    for r, p in zip(rows, pred):
        if r["outcome"] == "succeeded":
            assert r["perturbed_pred"] != r["label"] and p == r["perturbed_pred"]
        if r["outcome"] == "failed":
            assert p == r["label"]
    head = recs["deepwordbug:accuracy_under_attack"]
    assert head.value == pytest.approx(sum(r["outcome"] == "failed" for r in rows) / len(rows))
    assert head.extra["goal"] == "flip-label"
    assert "deepwordbug:attack_success_rate" in recs and "deepwordbug:words_removed_pct" not in recs


@needs_textattack
def test_keep_prediction_recipe_never_reports_accuracy(model, tmp_path):
    from aligneval.attack.loader import load_textattack
    from aligneval.attack.runner import attack

    AttackedText = load_textattack().shared.AttackedText

    out = attack({"m": str(model)}, str(_data(tmp_path / "d.jsonl")), tmp_path / "o", recipes=["input-reduction"],
                 num_examples=N, query_budget=60, examples="all", max_length=32)
    recs = {r.metric: r for r in out.records}
    assert not any(m.endswith(("accuracy_under_attack", "attack_success_rate")) for m in recs), sorted(recs)
    rows = _rows(tmp_path / "o", "input-reduction")
    reduced = [r for r in rows if r["outcome"] != "skipped"]
    assert reduced and {r["outcome"] for r in reduced} <= {"maximized", "succeeded", "failed"}
    # the reduced inputs, read back by the model itself, keep the original prediction
    pred = _hf_predict(model, [r["perturbed"] for r in reduced])
    kept = [int(p) == r["original_pred"] == r["label"] for r, p in zip(reduced, pred)]
    assert recs["input-reduction:prediction_kept_rate"].value == pytest.approx(np.mean(kept))
    # words removed, from TextAttack's own word split of the logged texts
    pct = [100.0 * (len(AttackedText(r["original"]).words) - len(AttackedText(r["perturbed"]).words))
           / len(AttackedText(r["original"]).words) if k else 0.0 for r, k in zip(reduced, kept)]
    rec = recs["input-reduction:words_removed_pct"]
    assert rec.value == pytest.approx(np.mean(pct)) and rec.n == len(reduced)
    assert rec.value > 0  # the reduction removed something
    assert rec.extra["goal"] == "keep-prediction" and rec.higher_is_better is None
    assert recs["input-reduction:skipped"].value == len(rows) - len(reduced)


def test_keep_prediction_rows_from_an_old_log():
    """A row logged before `words_after` (and as "succeeded") still gives the kept-prediction rate, and
    no accuracy; words removed count only rows that say how many words are left."""
    old = {"id": "a", "label": 1, "outcome": "succeeded", "original_pred": 1, "perturbed_pred": 1, "words": 8,
           "num_queries": 12}
    new = dict(old, id="b", outcome="maximized", words_after=2)
    recs = {r.metric: r for r in summary.scope_records([old, new], ["a", "b"], prefix="input-reduction",
                                                       split="t", model="m", extra={}, scope_note="x")}
    assert recs["input-reduction:prediction_kept_rate"].value == 1.0
    assert recs["input-reduction:words_removed_pct"].value == pytest.approx(75.0)
    assert recs["input-reduction:words_removed_pct"].n == 1
    assert "input-reduction:accuracy_under_attack" not in recs


@pytest.mark.slow
def test_attack_speed_benchmark_runs_input_reduction(tmp_path, monkeypatch):
    """The benchmark read the CLI's "Maximized" rows with a KeyError; now both sides say maximized."""
    import shutil
    import sys

    if shutil.which("textattack", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the textattack CLI is not installed next to this Python")
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "cache"))
    bench = load_script("benchmarks/attack_speed.py", "attack_speed_goals")
    model = bench.build_tiny(tmp_path / "model", seed=0)
    result = bench.compare(model, bench.pick_examples(4, seed=0, tiny=True), budget=40, work=tmp_path / "w",
                           recipe="input-reduction")
    assert result["outcomes"]["textattack_cli"].get("maximized", 0) > 0
    assert result["outcomes"]["aligneval"]["succeeded"] == 0  # a kept prediction is never a "success"
