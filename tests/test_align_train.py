"""The fine-tuning loop: identical twins at λ = 0, every variant end to end, folders and cards,
re-runs, refusal of a different run, atomic writes, freezing, label names, pickle refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from aligneval.align import train as train_mod
from aligneval.align.batches import epoch_batches
from aligneval.align.cards import CARD_NAME, LOG_NAME
from aligneval.align.train import align_pair
from aligneval.errors import ArtifactError, UsageError
from tests.tiny import make_tiny_model, write_fixture

VARIANTS = ("gan", "ct", "ct-heads", "combine", "mmd", "sinkhorn")
FAST = dict(max_steps=3, batch_size=8, lr=1e-3, warmup_ratio=0.0, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return {
        "model": str(make_tiny_model(tmp)),
        "train": write_fixture(tmp, n=48),
        "dev": write_fixture(tmp, n=16, seed=1),
        "tmp": tmp,
    }


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _log(folder):
    return [json.loads(line) for line in (folder / LOG_NAME).read_text().splitlines()]


@pytest.mark.parametrize("variant", ["gan", "ct", "mmd"])
def test_lambda_zero_twins_are_bit_identical(tiny, tmp_path, variant):
    result = align_pair(tiny["model"], tiny["train"], tmp_path / "pair", dev=tiny["dev"], variant=variant, lam=0.0,
                        **dict(FAST, max_steps=4, grad_accum=2))
    base, aligned = _weights(result.baseline), _weights(result.aligned)
    assert base.keys() == aligned.keys()
    for name in base:
        assert torch.equal(base[name], aligned[name]), name
    # The regularizer really ran (its value is logged) and did not touch the weights at λ = 0.
    assert all(r["alignment_loss"] > 0 for r in _log(result.aligned))
    assert all(r["alignment_loss"] is None for r in _log(result.baseline))
    # The weights moved away from the pretrained ones (training happened).
    start = load_file(str(Path(tiny["model"]) / "model.safetensors"))
    moved = [n for n in start if n in base and not torch.equal(start[n], base[n])]
    assert moved


def test_positive_lambda_changes_the_twin(tiny, tmp_path):
    result = align_pair(tiny["model"], tiny["train"], tmp_path / "pair", variant="mmd", lam=5.0, **FAST)
    base, aligned = _weights(result.baseline), _weights(result.aligned)
    key_names = [n for n in base if "attention.self.key.weight" in n]
    assert key_names and any(not torch.equal(base[n], aligned[n]) for n in key_names)
    assert base.keys() == aligned.keys()


@pytest.mark.parametrize("variant", VARIANTS)
def test_end_to_end_each_variant_reloads_with_plain_transformers(tiny, tmp_path, variant):
    result = align_pair(tiny["model"], tiny["train"], tmp_path / variant, dev=tiny["dev"], variant=variant,
                        lam=0.1, **FAST)
    ids = None
    for role, folder in (("baseline", result.baseline), ("aligned", result.aligned)):
        assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".bin")) == []
        model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        ids = tokenizer(["the movie was great"], return_tensors="pt")
        assert model(**ids).logits.shape == (1, 2)
        card = json.loads((folder / CARD_NAME).read_text())
        assert card["role"] == role and card["steps"] == 3 and card["seed"] == 13
        assert card["variant"] == (variant if role == "aligned" else "none")
        assert card["lambda"] == (0.1 if role == "aligned" else 0.0)
        assert card["twin"] == {"variant": variant, "lambda": 0.1, "lambdas": [0.1]}
        assert card["hyperparameters"]["batch_size"] == 8 and card["data"]["train"]["size"] == 48
        assert len(card["data"]["train"]["fingerprint"]) == 64 and card["versions"]["torch"]
        assert card["final"]["dev_accuracy"] is not None and card["wall_time_s"] > 0
        log = _log(folder)
        assert [r["step"] for r in log] == [1, 2, 3]
        assert all(r["lr"] > 0 and r["task_loss"] > 0 for r in log)
    # No auxiliary-net weights leak into the saved twin.
    assert _weights(result.baseline).keys() == _weights(result.aligned).keys()
    assert not list(result.out.glob(".tmp-*"))


def test_several_seeds_rerun_skips_and_different_run_is_refused(tiny, tmp_path):
    out = tmp_path / "multi"
    first = align_pair(tiny["model"], tiny["train"], out, seeds=(13, 21), variant="mmd", **FAST)
    assert [r.baseline for r in first.runs] == [out / "seed-13" / "baseline", out / "seed-21" / "baseline"]
    assert all(r.trained == ["baseline", "aligned"] for r in first.runs)
    seed_cards = [json.loads((r.aligned / CARD_NAME).read_text())["seed"] for r in first.runs]
    assert seed_cards == [13, 21]
    stamp = (out / "seed-13" / "aligned" / CARD_NAME).stat().st_mtime_ns
    again = align_pair(tiny["model"], tiny["train"], out, seeds=(13, 21), variant="mmd", **FAST)
    assert all(r.trained == [] for r in again.runs)
    assert (out / "seed-13" / "aligned" / CARD_NAME).stat().st_mtime_ns == stamp
    with pytest.raises(UsageError, match="different run"):
        align_pair(tiny["model"], tiny["train"], out, seeds=(13, 21), variant="gan", **FAST)
    redone = align_pair(tiny["model"], tiny["train"], out, seeds=(13, 21), variant="gan", overwrite=True, **FAST)
    # the baseline does not depend on the twin's variant: it is kept, only the twins are retrained
    assert all(r.trained == ["aligned"] for r in redone.runs)
    assert json.loads((out / "seed-21" / "aligned" / CARD_NAME).read_text())["variant"] == "gan"


def test_interrupted_save_leaves_no_half_written_folder(tiny, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.train_model

    def crash_on_aligned(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_model", crash_on_aligned)
    out = tmp_path / "crash"
    with pytest.raises(KeyboardInterrupt):
        align_pair(tiny["model"], tiny["train"], out, variant="gan", **FAST)
    assert (out / "baseline" / CARD_NAME).exists()
    assert not (out / "aligned").exists() and not list(out.glob(".tmp-*"))
    monkeypatch.setattr(train_mod, "train_model", real)
    resumed = align_pair(tiny["model"], tiny["train"], out, variant="gan", **FAST)
    assert resumed.runs[0].trained == ["aligned"]


def test_freeze_layers_keeps_bottom_weights(tiny, tmp_path):
    folder = make_tiny_model(tmp_path, num_hidden_layers=3)
    start = load_file(str(folder / "model.safetensors"))
    result = align_pair(str(folder), tiny["train"], tmp_path / "frozen", variant="gan", lam=1.0, freeze_layers=2,
                        **FAST)
    for twin in (result.baseline, result.aligned):
        saved = _weights(twin)
        for name, tensor in start.items():
            frozen = "embeddings" in name or ".layer.0." in name or ".layer.1." in name
            if frozen:
                assert torch.equal(saved[name], tensor), name
        assert not torch.equal(saved["bert.encoder.layer.2.attention.self.key.weight"],
                               start["bert.encoder.layer.2.attention.self.key.weight"])
    layers = _log(result.aligned)[0]["alignment_loss_layers"]
    assert len(layers) == 1  # only the trainable layer is regularized


def test_string_labels_go_into_config(tiny, tmp_path):
    data = write_fixture(tmp_path, n=32, string_labels=True, columns=("sentence", "sentiment"))
    result = align_pair(tiny["model"], data, tmp_path / "str", variant="mmd", text_column="sentence",
                        label_column="sentiment", **FAST)
    model = AutoModelForSequenceClassification.from_pretrained(result.aligned)
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}
    assert json.loads((result.aligned / CARD_NAME).read_text())["label_names"] == ["neg", "pos"]


def test_pickle_weights_need_opt_in(tiny, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(tiny["model"])
    folder = tmp_path / "pickled"
    model.config.save_pretrained(folder)  # transformers 5 always writes safetensors: pickle by hand
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(tiny["model"]).save_pretrained(folder)
    assert not list(folder.glob("*.safetensors"))
    with pytest.raises(ArtifactError, match="--allow-pickle"):
        align_pair(str(folder), tiny["train"], tmp_path / "p", variant="mmd", **FAST)
    result = align_pair(str(folder), tiny["train"], tmp_path / "p", variant="mmd", allow_pickle=True, **FAST)
    assert (result.aligned / "model.safetensors").exists()


def test_epoch_batches_cover_everything_once_and_are_seeded():
    lengths = [5, 9, 3, 7, 7, 2, 11, 4, 6, 8]
    a = epoch_batches(lengths, 3, torch.Generator().manual_seed(1))
    b = epoch_batches(lengths, 3, torch.Generator().manual_seed(1))
    assert a == b
    assert sorted(i for batch in a for i in batch) == list(range(10))
