"""Model cards, read back through huggingface_hub's own card API: every value equals results.json, every
interval and verdict equals comparison.json; an existing README.md keeps what others wrote; push fails
offline, without a token and against an unreachable Hub with one line and exit 5."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from aligneval.cli import main
from aligneval.compare import compare
from tests.fixtures_results import make_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with its comparison.json, where the gate and the card look for it."""
    folder = make_run(tmp_path_factory.mktemp("card") / "run", n=200, models={"baseline": (1.2, 1.0),
                                                                              "aligned": (2.6, 0.5)})
    compare(folder, resamples=200).write(folder / "comparison.json")
    return folder


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = make_run(tmp_path_factory.mktemp("card-seeds") / "run", n=120, seeds=[13, 42], attacks=False)
    compare(folder, resamples=200).write(folder / "comparison.json")
    return folder


def _doc(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def _rows(run: Path) -> dict[tuple[str, str, str], dict]:
    return {(r["suite"], r["split"], r["metric"]): r for r in _doc(run, "comparison.json")["comparison"]["records"]}


def _numeric(run: Path, models: set[str]) -> dict[tuple[str, str, str, str], float]:
    return {(r["suite"], r["split"], r["metric"], r["model"]): r["value"] for r in _doc(run, "results.json")["records"]
            if r["model"] in models and r["value"] is not None}


@pytest.mark.parametrize("model", ["aligned", "baseline"])
def test_card_values_equal_results_json_through_huggingface_hub(run, tmp_path, model):
    out = tmp_path / model / "README.md"
    assert main(["card", str(run), "--model", model, "--out", str(out)]) == 0
    loaded = ModelCard.load(out).data.eval_results
    meta = metadata_load(out)
    parsed = model_index_to_eval_results(meta["model-index"])[1]
    assert len(loaded) == len(parsed) == len(_numeric(run, {model}))  # every numeric record, none twice
    records, rows = _numeric(run, {model}), _rows(run)
    for via_card, via_meta in zip(loaded, parsed):
        assert via_card == via_meta
        args = via_card.metric_args
        key = (args["suite"], via_card.dataset_split, via_card.metric_type)
        assert via_card.metric_value == records[(*key, model)]  # exact: the stored float
        assert args["n"] == next(r["n"] for r in _doc(run, "results.json")["records"]
                                 if (r["suite"], r["split"], r["metric"], r["model"]) == (*key, model))
        row = rows[key]
        [paired] = args["comparisons"]
        assert paired["this_model"] == ("candidate" if model == "aligned" else "baseline")
        for field in ("delta", "ci_low", "ci_high", "p_value", "verdict"):
            assert paired.get(field) == row[field]
        assert paired["confidence"] == 0.95
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert "alignment-attention" in meta["tags"] and ("ct" if model == "aligned" else "baseline") in meta["tags"]


def test_card_prose_states_training_verdicts_and_loading(run, tmp_path):
    out = tmp_path / "README.md"
    assert main(["card", str(run), "--out", str(out)]) == 0  # the only twin is the default
    assert "base_model" not in metadata_load(out)  # alignment.json names 'tiny-bert', not a Hub id
    assert main(["card", str(run), "--out", str(tmp_path / "named.md"), "--base-model", "org/tiny-bert",
                 "--repo-id", "me/tiny-aligned"]) == 0
    assert metadata_load(tmp_path / "named.md")["base_model"] == "org/tiny-bert"
    assert 'from_pretrained("me/tiny-aligned")' in (tmp_path / "named.md").read_text()
    text = ModelCard.load(out).text
    rows = _rows(run)
    acc = rows[("accuracy", "test", "accuracy")]
    assert "| variant | `ct` |" in text and "| λ | 0.0100 |" in text
    from aligneval.formatting import fmt_ci, fmt_delta

    line = next(x for x in text.splitlines() if x.startswith("| Accuracy |"))
    assert fmt_delta(acc["delta"]) in line and fmt_ci(acc["ci_low"], acc["ci_high"]) in line
    assert {"better": "better", "worse": "worse", "no-difference": "no difference"}[acc["verdict"]] in line
    assert 'AutoModelForSequenceClassification.from_pretrained("checkpoints/x/aligned")' in text


def test_seed_group_states_the_seed_mean_and_each_seed(seeded, tmp_path):
    out = tmp_path / "README.md"
    assert main(["card", str(seeded), "--model", "aligned", "--out", str(out)]) == 0
    rows = _rows(seeded)
    records = _numeric(seeded, {"aligned@13", "aligned@42"})
    results = ModelCard.load(out).data.eval_results
    assert results
    for e in results:
        key = (e.metric_args["suite"], e.dataset_split, e.metric_type)
        assert e.metric_args["seeds"] == {"13": records[(*key, "aligned@13")], "42": records[(*key, "aligned@42")]}
        if key in rows:
            assert e.metric_value == rows[key]["candidate"]
            assert e.metric_value == pytest.approx((records[(*key, "aligned@13")] + records[(*key, "aligned@42")]) / 2)


EXISTING = """---
license: mit
language: en
my_team_key: keep me
model-index:
- name: my-model
  results:
  - task: {type: text-classification}
    dataset: {type: imdb, name: IMDb}
    metrics:
    - {type: accuracy, value: 0.5, name: someone else's number}
tags:
- sentiment
---

# My model

Words the owner wrote.
"""


def test_existing_readme_is_updated_not_overwritten(run, tmp_path):
    out = tmp_path / "README.md"
    out.write_text(EXISTING)
    assert main(["card", str(run), "--out", str(out)]) == 0
    first = out.read_text()
    meta = metadata_load(out)
    assert meta["license"] == "mit" and meta["language"] == "en" and meta["my_team_key"] == "keep me"
    assert meta["tags"][0] == "sentiment" and "alignment-attention" in meta["tags"]
    results = ModelCard.load(out).data.eval_results
    theirs = [e for e in results if e.dataset_type == "imdb"]
    assert len(theirs) == 1 and theirs[0].metric_value == 0.5
    assert len(results) == 1 + len(_numeric(run, {"aligned"}))
    assert ModelCard.load(out).data.model_name == "my-model"
    assert "Words the owner wrote." in first and first.count("<!-- aligneval:begin -->") == 1
    assert main(["card", str(run), "--out", str(out)]) == 0  # again: the same file, nothing added twice
    assert out.read_text() == first


def test_card_needs_a_fresh_comparison(tmp_path, capsys):
    folder = make_run(tmp_path / "run", n=60, attacks=False)
    assert main(["card", str(folder), "--out", str(tmp_path / "c.md")]) == 3
    assert "run `aligneval report" in capsys.readouterr().err
    compare(folder, resamples=50).write(folder / "comparison.json")
    doc = _doc(folder, "results.json")
    doc["created"] = "2026-11-26T00:00:00Z"
    (folder / "results.json").write_text(json.dumps(doc))
    assert main(["card", str(folder), "--out", str(tmp_path / "c.md")]) == 3
    err = capsys.readouterr().err
    assert "stale" in err and len(err.strip().splitlines()) == 1


def test_card_without_out_writes_into_a_local_model_folder_only(run, tmp_path, capsys):
    assert main(["card", str(run)]) == 2  # checkpoints/x/aligned does not exist here
    assert "--out" in capsys.readouterr().err
    assert main(["card", str(run), "--model", "ghost", "--out", str(tmp_path / "c.md")]) == 2
    assert "no model 'ghost'" in capsys.readouterr().err


@pytest.mark.parametrize("env, says", [
    ({"HF_HUB_OFFLINE": "1"}, "offline"),
    ({"HF_HUB_OFFLINE": "0", "HF_TOKEN": ""}, "no Hugging Face token"),
    ({"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_not_a_token", "HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot push to"),
])
def test_push_fails_with_one_line_and_exit_5(tmp_path, env, says):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    full = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full.update(env, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "aligneval", "push", str(folder), "--repo-id", "someone/model"],
                          env=full, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout


def test_push_of_a_missing_folder_is_exit_3(tmp_path, capsys):
    assert main(["push", str(tmp_path / "nothing"), "--repo-id", "a/b"]) == 3


def test_against_an_older_run_the_baseline_card_keeps_its_own_values(tmp_path):
    old = make_run(tmp_path / "old", n=80, attacks=False)  # the same data, other models
    new = make_run(tmp_path / "new", n=80, attacks=False, models={"baseline": (1.0, 1.5), "aligned": (2.0, 1.0)})
    compare(new, against=old, resamples=50).write(new / "comparison.json")
    rows = _rows(new)
    for model in ("aligned", "baseline"):
        out = tmp_path / model / "README.md"
        assert main(["card", str(new), "--model", model, "--out", str(out)]) == 0
        records = _numeric(new, {model})
        for e in ModelCard.load(out).data.eval_results:
            key = (e.metric_args["suite"], e.dataset_split, e.metric_type)
            assert e.metric_value == records[(*key, model)]
            if model == "baseline":  # the comparison's baseline is the old run's: not this model
                assert "comparisons" not in e.metric_args
            elif key in rows:
                assert e.metric_args["comparisons"][0]["delta"] == rows[key]["delta"]


def test_hub_datasets_are_named_with_their_config_from_the_spec(tmp_path):
    import hashlib

    folder = make_run(tmp_path / "run", n=60, attacks=False)
    spec = tmp_path / "spec.toml"
    spec.write_text('[splits.test]\nrole = "test"\npath = "hub:glue"\nhub_config = "sst2"\nhub_split = "validation"\n')
    doc = _doc(folder, "results.json")
    doc["data"]["test"]["source"] = "hub:glue[validation]"
    doc["spec"].update(path=str(spec), sha256=hashlib.sha256(spec.read_bytes()).hexdigest())
    (folder / "results.json").write_text(json.dumps(doc))
    compare(folder, resamples=50).write(folder / "comparison.json")
    out = tmp_path / "README.md"
    assert main(["card", str(folder), "--out", str(out)]) == 0
    meta = metadata_load(out)
    assert meta["datasets"] == ["glue"]
    tests = [e for e in ModelCard.load(out).data.eval_results if e.dataset_type == "glue"]
    assert tests and all(e.dataset_config == "sst2" and e.dataset_split == "validation" for e in tests)
    others = [e for e in ModelCard.load(out).data.eval_results if e.dataset_type != "glue"]
    assert others and all(e.dataset_config is None for e in others)
