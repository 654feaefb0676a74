"""Prediction: length-sorted dynamic padding gives the same probabilities as one-at-a-time inference;
the cache means a second call never runs the model; model folders are checked before loading."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from aligneval import predict
from aligneval.data import DataSource, load_examples
from aligneval.errors import ArtifactError
from tests.tiny import make_tiny_model, sentences, write_fixture


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m"), seed=0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "shared-cache"))
    return tmp_path / "shared-cache"


@pytest.fixture
def forward_calls(monkeypatch):
    calls = []
    real = predict.forward

    def counting(model, batch):
        calls.append(batch["input_ids"].shape)
        return real(model, batch)

    monkeypatch.setattr(predict, "forward", counting)
    return calls


def test_sorted_dynamic_padding_matches_one_at_a_time(model_dir):
    import torch

    hf_model, tok = predict.load_model(model_dir)
    texts = [t for t, _ in sentences(40, seed=5)]
    probs = predict.predict_probs(hf_model, tok, texts, max_length=16, batch_size=7, progress=False)
    with torch.inference_mode():
        ref = np.stack([torch.softmax(hf_model(**tok(t, truncation=True, max_length=16, return_tensors="pt"))
                                      .logits.double(), -1)[0].numpy() for t in texts])
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)


@pytest.fixture
def two_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_batches_on_several_threads_give_the_same_numbers_in_order(model_dir, two_threads, monkeypatch):
    import threading

    import torch

    hf_model, tok = predict.load_model(model_dir)
    texts = [t for t, _ in sentences(40, seed=5)]
    lengths = np.array([len(ids) for ids in tok(texts, truncation=True, max_length=16)["input_ids"]])
    batches = len(predict.batch_plan(lengths, 3))
    names = []
    real = predict.forward
    monkeypatch.setattr(predict, "forward", lambda m, b: names.append(threading.current_thread().name) or real(m, b))
    assert predict.cpu_workers(hf_model, batches) == 2
    concurrent = predict.predict_probs(hf_model, tok, texts, max_length=16, batch_size=3, progress=False)
    assert torch.get_num_threads() == 2  # restored
    assert len(names) == batches and all(n.startswith("aligneval-predict") for n in names)
    torch.set_num_threads(1)
    names.clear()
    serial = predict.predict_probs(hf_model, tok, texts, max_length=16, batch_size=3, progress=False)
    assert names == [threading.current_thread().name] * batches  # one thread: the plain loop
    np.testing.assert_array_equal(concurrent, serial)  # every batch alone on one intra-op thread either way
    with torch.inference_mode():
        ref = np.stack([torch.softmax(hf_model(**tok(t, truncation=True, max_length=16, return_tensors="pt"))
                                      .logits.double(), -1)[0].numpy() for t in texts])
    np.testing.assert_allclose(concurrent, ref, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_batch_plan_caps_examples_and_padded_tokens(seed):
    """Every example once, longest first; at most batch_size examples and batch_size x the median length in
    padded tokens per batch (a longer example alone); equal lengths give plain cuts of batch_size; a long
    tail pads fewer tokens than plain cuts of the same order."""
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(8, 30, 300), rng.integers(60, 128, 20)])
    rng.shuffle(lengths)
    plan = predict.batch_plan(lengths, 32)
    order = np.concatenate(plan)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert np.all(np.diff(lengths[order]) <= 0)
    budget = 32 * int(np.median(lengths))
    for batch in plan:
        assert 1 <= len(batch) <= 32
        assert len(batch) == 1 or lengths[batch].max() * len(batch) <= budget
    plain = [order[i:i + 32] for i in range(0, len(order), 32)]  # the cut-every-32 plan
    padded = sum(lengths[b].max() * len(b) for b in plan)
    assert padded < sum(lengths[b].max() * len(b) for b in plain)
    same = np.full(100, 17)
    assert [b.tolist() for b in predict.batch_plan(same, 32)] == [list(range(i, min(i + 32, 100))) for i in range(0, 100, 32)]
    assert predict.batch_plan(np.array([], dtype=np.int64), 32) == []


def test_an_error_in_a_batch_thread_reaches_the_caller(model_dir, two_threads, monkeypatch):
    import torch

    hf_model, tok = predict.load_model(model_dir)
    texts = [t for t, _ in sentences(40, seed=5)]
    calls = []
    real = predict.forward

    def failing(model, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory in batch 3")
        return real(model, batch)

    monkeypatch.setattr(predict, "forward", failing)
    with pytest.raises(RuntimeError, match="batch 3"):
        predict.predict_probs(hf_model, tok, texts, max_length=16, batch_size=3, progress=False)
    assert torch.get_num_threads() == 2  # restored


def test_pairs_are_encoded_together(model_dir):
    import torch

    hf_model, tok = predict.load_model(model_dir)
    a, b = ["the movie was great", "dull plot"], ["really good", "the cast was very bad and the story weak"]
    probs = predict.predict_probs(hf_model, tok, a, b, max_length=16, batch_size=2, progress=False)
    with torch.inference_mode():
        ref = [torch.softmax(hf_model(**tok(x, y, truncation=True, max_length=16, return_tensors="pt")).logits.double(),
                             -1)[0].numpy() for x, y in zip(a, b)]
    np.testing.assert_allclose(probs, np.stack(ref), atol=1e-6)


def test_cache_hit_runs_no_forward_and_writes_parquet(model_dir, tmp_path, cache, forward_calls):
    data = write_fixture(tmp_path, n=30, name="test")
    examples = load_examples(DataSource(str(data), id_column="id"))
    art = predict.inspect_model("m", str(model_dir))
    first = predict.predict_split(art, "test", examples, tmp_path / "run1", max_length=16, batch_size=8, progress=False)
    _, tok = predict.load_model(model_dir)
    lengths = np.array([len(ids) for ids in tok(list(examples.texts), truncation=True, max_length=16)["input_ids"]])
    calls = len(predict.batch_plan(lengths, 8))
    assert len(forward_calls) == calls >= 4  # at least ceil(30 / 8)
    # batches are length-sorted: widths never increase
    widths = [shape[1] for shape in forward_calls]
    assert widths == sorted(widths, reverse=True)

    again = predict.predict_split(art, "test", examples, tmp_path / "run1", max_length=16, batch_size=8, progress=False)
    other_run = predict.predict_split(art, "test", examples, tmp_path / "run2", max_length=16, batch_size=8,
                                      progress=False)
    assert len(forward_calls) == calls  # run folder hit, then shared-cache hit
    for p in (again, other_run):
        assert p.ids == first.ids and np.array_equal(p.probs, first.probs)

    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "run2" / "predictions" / "m" / "test.parquet")
    assert table.column_names == ["id", "label", "probs", "text_sha256", "text"]
    assert table.num_rows == 30 and len(set(table.column("id").to_pylist())) == 30
    assert table.column("text_sha256").to_pylist() == examples.text_sha256()

    predict.predict_split(art, "test", examples, tmp_path / "run1", max_length=12, batch_size=8, progress=False)
    short = np.array([len(ids) for ids in tok(list(examples.texts), truncation=True, max_length=12)["input_ids"]])
    assert len(forward_calls) == calls + len(predict.batch_plan(short, 8))  # another max_length, another prediction


def test_cache_key_tracks_weights_tokenizer_data_and_length(model_dir, tmp_path):
    data = write_fixture(tmp_path, n=20, name="d")
    ex = load_examples(DataSource(str(data)))
    ex_other = load_examples(DataSource(str(data), sample=10))
    art = predict.inspect_model("m", str(model_dir))
    other = make_tiny_model(tmp_path / "other", seed=1)
    art2 = predict.inspect_model("m", str(other))
    keys = {predict.cache_key(art, ex, 16), predict.cache_key(art, ex, 17), predict.cache_key(art, ex_other, 16),
            predict.cache_key(art2, ex, 16)}
    assert len(keys) == 4
    assert art.weights_sha256 != art2.weights_sha256
    assert predict.cache_key(art, ex, 16) == predict.cache_key(predict.inspect_model("x", str(model_dir)), ex, 16)


def test_model_folder_checks(model_dir, tmp_path):
    empty = tmp_path / "empty"
    shutil.copytree(model_dir, empty)
    (empty / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="no model weights"):
        predict.inspect_model("m", str(empty))
    with pytest.raises(ArtifactError, match="model folder not found"):
        predict.inspect_model("m", str(tmp_path / "no" / "such" / "folder"))
    no_config = tmp_path / "noconf"
    shutil.copytree(model_dir, no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(ArtifactError, match="no config.json"):
        predict.inspect_model("m", str(no_config))


def test_bin_only_checkpoint_needs_allow_pickle(model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import torch

    folder = tmp_path / "pickled"
    pickled = AutoModelForSequenceClassification.from_pretrained(model_dir)
    pickled.config.save_pretrained(folder)  # transformers 5 always writes safetensors: pickle by hand
    torch.save(pickled.state_dict(), folder / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    assert (folder / "pytorch_model.bin").exists() and not list(folder.glob("*.safetensors"))
    with pytest.raises(ArtifactError, match=r"pickled checkpoint \(pytorch_model.bin\).*--allow-pickle"):
        predict.inspect_model("m", str(folder))
    art = predict.inspect_model("m", str(folder), allow_pickle=True)
    assert art.pickle
    hf_model, tok = predict.ModelLoader().load(art)
    safe_model, _ = predict.load_model(model_dir)
    texts = ["the movie was great", "awful"]
    np.testing.assert_allclose(predict.predict_probs(hf_model, tok, texts, progress=False),
                               predict.predict_probs(safe_model, tok, texts, progress=False), atol=1e-7)


def test_corrupt_predictions_file(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="cannot read predictions"):
        predict.read_predictions(bad)
    with pytest.raises(ArtifactError, match="predictions not found"):
        predict.read_predictions(tmp_path / "none.parquet")


def test_label_names_from_config():
    assert predict.label_names_from_config({"id2label": {"1": "pos", "0": "neg"}}) == ["neg", "pos"]
    assert predict.label_names_from_config({"num_labels": 3}) == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert predict.label_names_from_config({}) == ["LABEL_0", "LABEL_1"]
