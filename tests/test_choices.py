"""Multiple choice: SWAG- and HellaSwag-layout splits, specs with `task = "multiple-choice"`, predictions
against transformers' own multiple-choice forward, and a pair trained and evaluated end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aligneval import choices, predict
from aligneval.data import DataSource, load_examples
from aligneval.errors import DataError, UsageError
from aligneval.spec import parse_spec
from aligneval.tasks import MULTIPLE_CHOICE, data_columns, task_of_config
from tests.tiny import _one_thread, make_tokenizer, tiny_config
from tests.tiny_choices import write_hellaswag, write_swag

SWAG = data_columns(MULTIPLE_CHOICE, {})
HELLASWAG = dict(text_column="ctx_a", text_pair_column="ctx_b", choice_columns=("endings",), id_column="ind")


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_swag_columns_are_the_default_layout(tmp_path):
    path = write_swag(tmp_path, n=12)
    ex = load_examples(DataSource(str(path), **SWAG))
    rows = _lines(path)
    assert isinstance(ex, choices.ChoiceExamples) and ex.num_choices == 4
    assert ex.label_names == ["0", "1", "2", "3"] and ex.labels.tolist() == [r["label"] for r in rows]
    for got_text, got_choices, r in zip(ex.texts, ex.choices, rows):
        assert got_text == r["sent1"]
        # the prefix (sent2) starts every ending, as transformers' SWAG example builds the second segment
        assert got_choices == [f"{r['sent2']} {r[f'ending{j}']}".strip() for j in range(4)]
    # the fingerprint and the per-example hash cover the endings, not only the context
    rows[0]["ending2"] += " very"
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in rows))
    changed = load_examples(DataSource(str(other), **SWAG))
    assert changed.fingerprint != ex.fingerprint
    assert changed.text_sha256()[0] != ex.text_sha256()[0] and changed.text_sha256()[1:] == ex.text_sha256()[1:]


def test_hellaswag_layout_list_of_endings_and_string_labels(tmp_path):
    path = write_hellaswag(tmp_path, n=6)
    rows = _lines(path)
    assert all(isinstance(r["label"], str) for r in rows) and rows[0]["ctx_b"] == ""
    ex = load_examples(DataSource(str(path), **HELLASWAG))
    assert ex.ids == [str(r["ind"]) for r in rows]
    assert ex.labels.tolist() == [int(r["label"]) for r in rows]
    assert ex.choices[0] == rows[0]["endings"]  # an empty ctx_b adds nothing
    assert ex.choices[1] == [f"{rows[1]['ctx_b']} {e}" for e in rows[1]["endings"]]


def test_unusable_choice_data_fails_in_one_line(tmp_path):
    rows = _lines(write_swag(tmp_path, n=6))

    def load(records, **kw):
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return load_examples(DataSource(str(path), **{**SWAG, **kw}))

    with pytest.raises(DataError, match="outside the choice indices 0..3"):
        load([dict(r, label=4) if i == 2 else r for i, r in enumerate(rows)])
    unlabelled = [dict(r, label=-1) if i == 2 else r for i, r in enumerate(rows)]
    assert len(load(unlabelled, drop_labels=("-1",))) == 5  # SWAG's test split marks hidden labels -1
    with pytest.raises(DataError, match="null or empty context or ending"):
        load([dict(r, ending1="") if i == 3 else r for i, r in enumerate(rows)])
    assert len(load([dict(r, ending1="") if i == 3 else r for i, r in enumerate(rows)], on_empty="skip")) == 5
    with pytest.raises(DataError, match="no column 'ending3'"):
        load([{k: v for k, v in r.items() if k != "ending3"} for r in rows])
    ragged = [dict(r, endings=[r["ending0"], r["ending1"]] + ([r["ending2"]] if i else [])) for i, r in enumerate(rows)]
    with pytest.raises(DataError, match="same number"):
        load(ragged, choice_columns=("endings",))
    with pytest.raises(DataError, match="not a choice index"):
        load([dict(r, label="second") if i == 1 else r for i, r in enumerate(rows)])


def _spec(tmp_path, **extra):
    path = write_swag(tmp_path, n=8)
    doc = {"name": "mc", "task": "multiple-choice", "splits": {"test": {"role": "test", "path": str(path)}},
           "suites": {"accuracy": {}}}
    doc.update(extra)
    return doc


def test_spec_task_sets_swag_defaults_and_checks_suites(tmp_path):
    spec = parse_spec(_spec(tmp_path))
    source = spec.splits["test"].source
    assert spec.task == MULTIPLE_CHOICE
    assert (source.text_column, source.text_pair_column, source.choice_columns) == (
        "sent1", "sent2", ("ending0", "ending1", "ending2", "ending3"))
    with pytest.raises(UsageError, match="unknown task 'multiple-choise'.*did you mean 'multiple-choice'"):
        parse_spec(_spec(tmp_path, task="multiple-choise"))
    doc = _spec(tmp_path, task="sequence-classification")
    doc["splits"]["test"]["choice_columns"] = ["a", "b"]
    with pytest.raises(UsageError, match="choice columns belong to task 'multiple-choice'"):
        parse_spec(doc)
    with pytest.raises(UsageError, match="adversarial suite does not apply to multiple-choice") as err:
        parse_spec(_spec(tmp_path, suites={"accuracy": {}, "adversarial": {}}))
    assert "\n" not in err.value.message


def _tiny_mc_model(folder, seed=0):
    from transformers import AutoModelForMultipleChoice

    _one_thread()  # tiny models gain nothing from more threads on a shared machine (tests/tiny.py)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(folder)
    torch.manual_seed(seed)
    model = AutoModelForMultipleChoice.from_config(tiny_config("bert", vocab_size=len(tokenizer)))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def test_predictions_match_transformers_multiple_choice_forward(tmp_path):
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    from aligneval import predict

    folder = _tiny_mc_model(tmp_path / "mc")
    model, tokenizer = predict.load_model(folder)
    assert type(model).__name__ == "BertForMultipleChoice" and task_of_config(model.config) == MULTIPLE_CHOICE
    ex = load_examples(DataSource(str(write_swag(tmp_path, n=11)), **SWAG))
    rows, probs = predict.predict_choices(model, tokenizer, ex, max_length=24, batch_size=3, progress=False)
    ordered = np.empty_like(probs)
    ordered[rows] = probs
    # reference: transformers' own recipe, one example at a time, padded as a [1, C, L] batch
    ref_model = AutoModelForMultipleChoice.from_pretrained(folder).eval()
    ref_tok = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        for i in range(len(ex)):
            enc = ref_tok([ex.texts[i]] * 4, ex.choices[i], truncation=True, max_length=24, padding=True,
                          return_tensors="pt")
            logits = ref_model(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits
            np.testing.assert_allclose(ordered[i], torch.softmax(logits.double(), -1)[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(ordered.sum(1), 1.0, atol=1e-12)


def test_model_head_must_match_the_task(tmp_path):
    from aligneval import predict
    from tests.tiny import make_tiny_model

    classifier, _ = predict.load_model(make_tiny_model(tmp_path))
    ex = load_examples(DataSource(str(write_swag(tmp_path, n=4)), **SWAG))
    with pytest.raises(UsageError, match="model 'm' has a sequence-classification head .* data is multiple-choice"):
        predict.check_head(classifier, ex, "m")


# ---------- end to end --------------------------------------------------------------------------

SPEC = """
name = "mc-fixture"
task = "multiple-choice"
max_length = 32
batch_size = 8
seed = 0

[splits.dev]
role = "dev"
path = "{dev}"

[splits.test]
role = "test"
path = "{test}"

[splits.hella]
role = "ood"
path = "{ood}"
text_column = "ctx_a"
text_pair_column = "ctx_b"
choice_columns = ["endings"]
id_column = "ind"

[suites.accuracy]
roles = ["dev", "test", "ood"]

[suites.calibration]
roles = ["dev", "test", "ood"]

[suites.ood]

[suites.uncertainty]

[suites.alignment]
num_examples = 12
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A multiple-choice pair trained with `aligneval align --task multiple-choice` on the SWAG fixture."""
    from aligneval.cli import main
    from tests.tiny import make_tiny_model

    tmp = tmp_path_factory.mktemp("mc-e2e")
    model = make_tiny_model(tmp)  # a sequence classifier: align builds the multiple-choice head itself
    code = main(["align", "--model", str(model), "--task", "multiple-choice", "--train",
                 str(write_swag(tmp, n=96)), "--dev", str(write_swag(tmp, n=24, seed=1)), "--variant", "mmd",
                 "--lambda", "0.1", "--max-steps", "60", "--batch-size", "8", "--lr", "5e-3",
                 "--warmup-ratio", "0", "--max-length", "32", "--out", str(tmp / "pair"), "--no-progress"])
    assert code == 0
    spec = tmp / "mc.toml"
    spec.write_text(SPEC.format(dev=write_swag(tmp, n=40, seed=2, noise=0.25),
                                test=write_swag(tmp, n=40, seed=3, noise=0.25),
                                ood=write_hellaswag(tmp, n=30, noise=0.4)))
    return {"tmp": tmp, "pair": tmp / "pair", "spec": spec}


def _hand_metrics(probs, labels):
    onehot = np.eye(probs.shape[1])[labels]
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)),
            "brier": float(np.mean(np.sum((probs - onehot) ** 2, 1))),
            "nll": float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))}


@pytest.mark.slow
def test_pair_trained_and_evaluated_end_to_end(trained, monkeypatch):
    from netcal.metrics import ECE
    from scipy.optimize import minimize_scalar
    from transformers import AutoModelForMultipleChoice

    from aligneval.artifacts import read_predictions
    from aligneval.runner import run

    monkeypatch.setenv("ALIGNEVAL_CACHE", "off")
    pair = trained["pair"]
    for role in ("baseline", "aligned"):
        card = json.loads((pair / role / "alignment.json").read_text())
        assert card["task"] == MULTIPLE_CHOICE and card["hyperparameters"]["task"] == MULTIPLE_CHOICE
        assert type(AutoModelForMultipleChoice.from_pretrained(pair / role)).__name__ == "BertForMultipleChoice"
    base_card = json.loads((pair / "baseline" / "alignment.json").read_text())
    assert base_card["final"]["dev_accuracy"] >= 0.75  # learnt: chance is 0.25

    out = trained["tmp"] / "run"
    results = run(trained["spec"], {"baseline": str(pair / "baseline"), "aligned": str(pair / "aligned")}, out,
                  progress=False)
    records = {(r["suite"], r["split"], r["model"], r["metric"]): r for r in results.doc["records"]}
    for model in ("baseline", "aligned"):
        preds = {s: read_predictions(out / "predictions" / model / f"{s}.parquet")[0] for s in ("dev", "test", "hella")}
        for split, p in preds.items():
            assert p.probs.shape == (p.n, 4)
            hand = _hand_metrics(p.probs, p.labels)
            assert records[("accuracy", split, model, "accuracy")]["value"] == pytest.approx(hand["accuracy"], abs=1e-12)
            for metric in ("brier", "nll"):
                assert records[("calibration", split, model, metric)]["value"] == pytest.approx(hand[metric], rel=1e-9)
            ece = ECE(bins=15).measure(p.probs, p.labels)
            assert records[("calibration", split, model, "ece@15")]["value"] == pytest.approx(ece, abs=1e-9)
        assert ("ood", "hella", model, "drop:accuracy") in records and ("uncertainty", "test", model, "aurc") in records
        assert records[("alignment", "test", model, "kq_mmd2")]["n"] == 12
        # the temperature is fitted on dev alone: an independent fit of dev's NLL finds the same value
        dev = preds["dev"]
        logp = np.log(dev.probs)

        def nll(t, logp=logp, labels=dev.labels):
            z = logp / t
            z = z - z.max(1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]))

        fitted = records[("calibration", "dev", model, "temperature")]
        assert fitted["extra"]["fitted_on"] == "dev"
        ref = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded", options={"xatol": 1e-6}).x
        assert fitted["value"] == pytest.approx(ref, rel=1e-3)
        test = preds["test"]
        z = np.log(test.probs) / fitted["value"]
        scaled = np.exp(z - z.max(1, keepdims=True))
        scaled /= scaled.sum(1, keepdims=True)
        assert records[("calibration", "test", model, "ts:nll")]["value"] == pytest.approx(
            _hand_metrics(scaled, test.labels)["nll"], rel=1e-6)


@pytest.mark.slow
def test_adversarial_suite_says_it_does_not_apply(trained, capsys):
    from aligneval.cli import main

    code = main(["run", str(trained["spec"]), "--model", f"baseline={trained['pair'] / 'baseline'}",
                 "--suite", "adversarial", "--out", str(trained["tmp"] / "adv"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not apply to multiple-choice" in err[0], err


def test_shipped_swag_hellaswag_spec_reads_the_documented_columns():
    """allenai/swag (regular): sent1, sent2, ending0..3, label ClassLabel "0".."3" (-1 hidden);
    Rowan/hellaswag: ctx_a, ctx_b, endings (list), label as a string. The shipped spec reads those."""
    from aligneval.spec import load_spec

    spec = load_spec("swag-hellaswag", check_files=False)
    assert spec.task == MULTIPLE_CHOICE and set(spec.suites) == {"accuracy", "calibration", "ood", "uncertainty"}
    roles = {name: split.role for name, split in spec.splits.items()}
    assert roles == {"dev": "dev", "test": "test", "hellaswag": "ood"}
    for name in ("dev", "test"):
        src = spec.splits[name].source
        assert (src.path, src.hub_config, src.text_column, src.text_pair_column, src.label_column) == (
            "hub:allenai/swag", "regular", "sent1", "sent2", "label")
        assert src.choice_columns == ("ending0", "ending1", "ending2", "ending3") and src.drop_labels == ("-1",)
    assert spec.splits["dev"].source.hub_split == "validation[:50%]"
    assert spec.splits["test"].source.hub_split == "validation[50%:]"
    hella = spec.splits["hellaswag"].source
    assert (hella.path, hella.hub_split, hella.text_column, hella.text_pair_column, hella.choice_columns) == (
        "hub:Rowan/hellaswag", "validation", "ctx_a", "ctx_b", ("endings",))


def test_hub_split_rows_read_as_the_datasets_give_them(tmp_path):
    """The rows `datasets` gives for each hub split (their documented features: SWAG's label a
    ClassLabel integer, HellaSwag's a string, endings a list), saved with save_to_disk and read
    through the shipped spec's column settings."""
    import datasets

    from aligneval.spec import load_spec

    spec = load_spec("swag-hellaswag", check_files=False)
    swag = datasets.Dataset.from_list(_lines(write_swag(tmp_path, n=6)), features=datasets.Features({
        "video-id": datasets.Value("string"), "sent1": datasets.Value("string"), "sent2": datasets.Value("string"),
        **{f"ending{j}": datasets.Value("string") for j in range(4)},
        "label": datasets.ClassLabel(names=["0", "1", "2", "3"])}))
    hella = datasets.Dataset.from_list(_lines(write_hellaswag(tmp_path, n=5)))
    for name, ds in (("test", swag), ("hellaswag", hella)):
        ds.save_to_disk(str(tmp_path / name))
        src = spec.splits[name].source
        ex = load_examples(DataSource(**{**src.__dict__, "path": str(tmp_path / name), "hub_split": None}))
        assert ex.num_choices == 4 and ex.labels.tolist() == [int(x) for x in ds["label"]]


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra", "albert", "distilbert",
                                        "deberta-v2", "mpnet"])
def test_every_registry_architecture_trains_and_predicts_a_multiple_choice_pair(tmp_path, model_type):
    """Each architecture of the q/k registry has a multiple-choice head in transformers: a twin pair
    trains (mmd term on) and its saved twin predicts [n, 4] probabilities."""
    from aligneval import predict
    from aligneval.align.train import align_pair
    from tests.tiny import make_tiny_model

    folder = make_tiny_model(tmp_path, model_type)
    if model_type in ("distilbert", "mpnet"):  # as their real tokenizers: no segment ids (the models take none)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(folder, model_input_names=["input_ids", "attention_mask"]).save_pretrained(folder)
    result = align_pair(str(folder), write_swag(tmp_path, n=8), tmp_path / "pair", task=MULTIPLE_CHOICE,
                        variant="mmd", lam=0.1, max_steps=2, batch_size=4, max_length=24, progress=False)
    model, tokenizer = predict.load_model(result.aligned)
    assert task_of_config(model.config) == MULTIPLE_CHOICE
    ex = load_examples(DataSource(str(write_swag(tmp_path, n=5, seed=4)), **SWAG))
    rows, probs = predict.predict_choices(model, tokenizer, ex, max_length=24, batch_size=2, progress=False)
    assert sorted(rows.tolist()) == list(range(5)) and probs.shape == (5, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)


@pytest.mark.slow
def test_two_process_predictions_equal_one_process(trained, tmp_path):
    """`run --num-processes 2` on the multiple-choice spec: each rank predicts whole batches of the
    one-process plan, so every stored probability equals the one-process run's bit for bit."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from aligneval.artifacts import read_predictions

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               ALIGNEVAL_CACHE="off", PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    pair = trained["pair"]
    args = [sys.executable, "-m", "aligneval", "run", str(trained["spec"]), "--model", f"baseline={pair / 'baseline'}",
            "--suite", "accuracy", "--no-progress"]
    for processes, out in (("1", tmp_path / "one"), ("2", tmp_path / "two")):
        proc = subprocess.run([*args, "--out", str(out), "--num-processes", processes], env=env, capture_output=True,
                              text=True, cwd=root, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for split in ("dev", "test", "hella"):
        one = read_predictions(tmp_path / "one" / "predictions" / "baseline" / f"{split}.parquet")[0]
        two = read_predictions(tmp_path / "two" / "predictions" / "baseline" / f"{split}.parquet")[0]
        assert one.ids == two.ids and np.array_equal(one.probs, two.probs)


def test_attack_loader_refuses_a_multiple_choice_model_in_one_line(tmp_path):
    """The attack wrapper loads through predict.load_model, so it would load a multiple-choice head;
    TextAttack's recipes attack classifiers, so it says so instead."""
    from aligneval.attack.wrapper import load_classifier

    folder = _tiny_mc_model(tmp_path / "mc")
    with pytest.raises(UsageError, match="multiple-choice model; TextAttack's recipes attack sequence classifiers") as err:
        load_classifier(folder)
    assert "\n" not in err.value.message
