"""The alignment suite: its statistics against hand computations and closed forms, padding ignored,
every registered architecture, and end to end (records, cache, paired comparison) on tiny BERTs."""

from __future__ import annotations

import itertools
import json
import math
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from scipy.stats import norm

from aligneval import diagnostics
from aligneval.errors import UsageError
from tests.tiny import MODEL_TYPES, TINY, make_tiny_model, make_tiny_pair, write_fixture

SCALES = (0.5, 1.0, 2.0)


def _padded(rng, lengths, heads=2, dim=4, shift=0.0):
    """k, q [B, H, L, d] with garbage (NaN, 1e4) in the padding, and the mask [B, L]."""
    width = max(lengths)
    k = rng.normal(size=(len(lengths), heads, width, dim))
    q = rng.normal(size=(len(lengths), heads, width, dim)) + shift
    mask = np.zeros((len(lengths), width), bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return k, q, mask


def _with_garbage(x, mask):
    x = x.copy()
    pad = ~mask
    x[:, 0][pad] = np.nan
    x[:, 1:][np.broadcast_to(pad[:, None], x[:, 1:].shape[:3])] = 1e4
    return x


# ---------- reference implementations: plain loops over points ------------------------------------

def mmd2_loop(x, y, scales=SCALES, bandwidth=None):
    """Gretton et al. (2012) eq. 3 by a double loop; median over distinct pooled pairs (numpy median)."""
    n = len(x)
    z = np.concatenate([x, y])
    if bandwidth is None:
        bandwidth = float(np.median([((z[a] - z[b]) ** 2).sum() for a, b in itertools.combinations(range(2 * n), 2)]))

    def kern(a, b):
        return sum(math.exp(-((a - b) ** 2).sum() / (s * bandwidth)) for s in scales)

    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += kern(x[i], x[j]) + kern(y[i], y[j]) - kern(x[i], y[j]) - kern(x[j], y[i])
    return total / (n * (n - 1))


def entropy_loop(q, k):
    """Mean over query rows of the entropy of softmax(q_i . k_j / sqrt(d)) over keys j."""
    d = q.shape[1]
    rows = []
    for i in range(len(q)):
        scores = [float(q[i] @ k[j]) / math.sqrt(d) for j in range(len(k))]
        top = max(scores)
        w = [math.exp(s - top) for s in scores]
        p = [v / sum(w) for v in w]
        rows.append(-sum(v * math.log(v) for v in p if v > 0))
    return sum(rows) / len(rows)


# ---------- the statistics ----------------------------------------------------------------------------

def test_identical_keys_and_queries_give_zero_mmd_and_chance_probe():
    rng = np.random.default_rng(0)
    k, _, mask = _padded(rng, [7, 5, 9, 6] * 5)
    assert np.abs(diagnostics.mmd2(k, k, mask)).max() < 1e-12
    train = np.arange(len(k)) % 2 == 0
    acc = diagnostics.probe_accuracy(k, k, mask, train)
    # every point appears once as a key and once as a query: exactly one of the two is right
    assert np.all(acc[~train] == 0.5) and np.isnan(acc[train]).all()


def test_mmd_equals_a_double_loop_with_the_median_heuristic():
    rng = np.random.default_rng(1)
    lengths = [6, 9, 4, 2, 1]
    k, q, mask = _padded(rng, lengths, shift=0.7)
    got = diagnostics.mmd2(k, q, mask)
    for b, n in enumerate(lengths):
        for h in range(2):
            if n < 2:
                assert np.isnan(got[b, h])  # the U-statistic needs two tokens
            else:
                assert got[b, h] == pytest.approx(mmd2_loop(k[b, h, :n], q[b, h, :n]), rel=1e-10, abs=1e-12)
    fixed = diagnostics.mmd2(k, q, mask, scales=(1.0,), bandwidth=3.0)
    assert fixed[1, 0] == pytest.approx(mmd2_loop(k[1, 0, :9], q[1, 0, :9], (1.0,), 3.0), rel=1e-10)


def test_mmd_of_shifted_gaussians_matches_the_closed_form():
    # K ~ N(0, I), Q ~ N(delta, I), kernel sum_s exp(-|a-b|^2 / (s m)) with m fixed:
    # E k(x, x') = (1 + 4/(s m))^(-d/2), E k(x, y) = that * exp(-|delta|^2 / (s m + 4)).
    d, m, n, examples = 3, 4.0, 250, 48
    delta = np.array([1.0, -0.5, 0.5])
    rng = np.random.default_rng(2)
    k = rng.normal(size=(examples, 1, n, d))
    q = rng.normal(size=(examples, 1, n, d)) + delta
    mask = np.ones((examples, n), bool)
    got = diagnostics.mmd2(k, q, mask, bandwidth=m).mean()
    want = sum(2 * (1 + 4 / (s * m)) ** (-d / 2) * (1 - math.exp(-(delta @ delta) / (s * m + 4))) for s in SCALES)
    assert got == pytest.approx(want, abs=0.025)  # about 3 standard errors of the mean over 48 examples
    # identical distributions (independent draws): the unbiased estimate centres on 0 (standard error
    # about 0.0005 here), where the biased V-statistic would sit near +0.015 at n = 250
    same = diagnostics.mmd2(k, rng.normal(size=k.shape), mask, bandwidth=m)
    assert abs(same.mean()) < 0.003


def test_probe_reaches_the_bayes_accuracy_of_two_gaussians():
    # equal-covariance Gaussians N(0, I) vs N(delta, I): Bayes accuracy = Phi(|delta| / 2)
    d, n_ex, tokens = 4, 200, 20
    delta = np.array([1.2, 0.9, 0.0, 0.0])  # |delta| = 1.5
    rng = np.random.default_rng(3)
    k = rng.normal(size=(n_ex, 1, tokens, d)) + delta
    q = rng.normal(size=(n_ex, 1, tokens, d))
    mask = np.ones((n_ex, tokens), bool)
    train = rng.permutation(n_ex) < n_ex // 2
    acc = diagnostics.probe_accuracy(k, q, mask, train)[:, 0]
    bayes = norm.cdf(np.linalg.norm(delta) / 2)
    assert np.isnan(acc[train]).all() and np.isfinite(acc[~train]).all()
    assert acc[~train].mean() == pytest.approx(bayes, abs=0.02)


def test_garbage_in_padding_changes_nothing():
    rng = np.random.default_rng(4)
    lengths = [5, 8, 3, 8, 6, 2]
    k, q, mask = _padded(rng, lengths, shift=0.3)
    dirty_k, dirty_q = _with_garbage(k, mask), _with_garbage(q, mask)
    train = np.array([True, False] * 3)
    np.testing.assert_array_equal(diagnostics.mmd2(k, q, mask), diagnostics.mmd2(dirty_k, dirty_q, mask))
    np.testing.assert_array_equal(diagnostics.attention_entropy(q, k, mask),
                                  diagnostics.attention_entropy(dirty_q, dirty_k, mask))
    np.testing.assert_array_equal(diagnostics.probe_accuracy(k, q, mask, train),
                                  diagnostics.probe_accuracy(dirty_k, dirty_q, mask, train))
    # and each example measured alone, without any padding, gives the same numbers
    for b, n in enumerate(lengths):
        alone = (k[b:b + 1, :, :n], q[b:b + 1, :, :n], np.ones((1, n), bool))
        np.testing.assert_allclose(diagnostics.mmd2(*alone)[0], diagnostics.mmd2(dirty_k, dirty_q, mask)[b], rtol=1e-10)
        np.testing.assert_allclose(diagnostics.attention_entropy(alone[1], alone[0], alone[2])[0],
                                   diagnostics.attention_entropy(dirty_q, dirty_k, mask)[b], rtol=1e-10)


def test_entropy_equals_a_hand_loop():
    rng = np.random.default_rng(5)
    lengths = [4, 7, 1]
    k, q, mask = _padded(rng, lengths, dim=8)
    got = diagnostics.attention_entropy(3 * q, 3 * k, mask)
    for b, n in enumerate(lengths):
        for h in range(2):
            assert got[b, h] == pytest.approx(entropy_loop(3 * q[b, h, :n], 3 * k[b, h, :n]), rel=1e-10, abs=1e-12)
    assert got[2, 0] == 0.0  # one token attends to itself with probability 1
    # equal scores: uniform attention over n keys has entropy log n
    flat = diagnostics.attention_entropy(np.zeros_like(q), k, mask)
    np.testing.assert_allclose(flat, np.log(np.array(lengths))[:, None].repeat(2, 1), rtol=1e-12)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_registered_architecture(model_type, tmp_path):
    """The suite's measurement on each q/k-registry architecture: a saved tiny model, loaded as the
    suite loads it; where attention is exactly softmax(QK^T/sqrt(d_h)) the entropy equals the entropy
    of the model's own attention probabilities."""
    from aligneval.suites import alignment

    folder = make_tiny_model(tmp_path, model_type)
    model, tokenizer = alignment.load(alignment.ModelInfo("m", str(folder)), False, False)
    texts = [f"the movie was {w} and the plot really {v}" for w, v in zip(["good", "bad", "dull", "fun"] * 3,
                                                                            ["moving", "weak", "fun", "poor"] * 3)]
    texts = [" ".join(t.split()[:3 + i % 6]) for i, t in enumerate(texts)]  # different lengths: padding
    train = np.arange(len(texts)) % 2 == 0
    values = alignment.measure(model, tokenizer, texts, None, train, qk_pattern=None, max_length=24, batch_size=5,
                               scales=SCALES, probe_c=1.0, probe_max_iter=200)
    shape = (len(texts), TINY["num_hidden_layers"], TINY["num_attention_heads"])
    assert all(v.shape == shape for v in values.values())
    assert np.isfinite(values["kq_mmd2"]).all() and np.isfinite(values["attn_entropy"]).all()
    probe = values["kq_probe_acc"]
    assert np.isnan(probe[train]).all() and ((probe[~train] >= 0) & (probe[~train] <= 1)).all()
    if model_type == "mpnet":  # relative position bias: the content entropy is not the model's attention
        return
    from transformers import AutoModelForSequenceClassification

    eager = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    if model_type == "distilbert":
        enc.pop("token_type_ids", None)  # the suite already narrowed the tokenizer to the model's inputs
    with torch.no_grad():
        attentions = eager(**enc, output_attentions=True).attentions
    mask = enc["attention_mask"].bool()
    lengths = mask.sum(1)
    for layer, probs in enumerate(attentions):
        plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-300).log(), torch.zeros(()))
        row = -plogp.sum(-1)  # [B, H, L]
        own = (row * mask[:, None, :]).sum(-1) / lengths[:, None]
        np.testing.assert_allclose(values["attn_entropy"][:, layer], own.double().numpy(), rtol=1e-4, atol=1e-5)


# ---------- the suite end to end ------------------------------------------------------------------------

SPEC = """
name = "tiny-align"
seed = 3
max_length = 24
batch_size = 8
[splits.dev]
role = "dev"
path = "dev.jsonl"
id_column = "id"
[splits.test]
role = "test"
path = "test.jsonl"
id_column = "id"
[suites.accuracy]
[suites.alignment]
num_examples = 30
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_pair(tmp_path_factory.mktemp("models"))


def _spec(folder, body=SPEC):
    folder.mkdir(parents=True, exist_ok=True)
    write_fixture(folder, n=40, name="dev", seed=1)
    write_fixture(folder, n=40, name="test", seed=2)
    path = folder / "spec.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_suite_end_to_end_records_cache_and_comparison(models, tmp_path, monkeypatch):
    from aligneval.compare import compare
    from aligneval.runner import run
    from aligneval.suites import alignment

    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "shared"))
    spec = _spec(tmp_path / "data")
    out = tmp_path / "run"
    paths = {k: str(v) for k, v in models.items()}
    first = run(spec, paths, out, progress=False)
    recs = {(r.model, r.metric): r for r in first.records if r.suite == "alignment"}
    layers, heads = TINY["num_hidden_layers"], TINY["num_attention_heads"]
    for model in models:
        names = {m for (mod, m) in recs if mod == model}
        want = {f"{m}{suffix}" for m in alignment.METRICS
                for suffix in [""] + [f"@L{l}" for l in range(layers)]
                + [f"@L{l}H{h}" for l in range(layers) for h in range(heads)]}
        assert names == want
        table = pq.read_table(out / "alignment" / model / "test.parquet")
        assert table.column_names[0] == "id" and set(table.column_names[1:]) == want
        ids = table.column("id").to_pylist()
        assert len(ids) == 30 == len(set(ids))
        cols = {c: table.column(c).to_numpy() for c in table.column_names[1:]}
        for metric in alignment.METRICS:
            per_head = np.stack([np.stack([cols[f"{metric}@L{l}H{h}"] for h in range(heads)], -1)
                                 for l in range(layers)], 1)  # [n, L, H]
            np.testing.assert_allclose(cols[metric], per_head.reshape(30, -1).mean(1), rtol=1e-12)
            np.testing.assert_allclose(cols[f"{metric}@L1"], per_head[:, 1].mean(1), rtol=1e-12)
            for column in (metric, f"{metric}@L1", f"{metric}@L0H2"):
                rec = recs[(model, column)]
                finite = cols[column][np.isfinite(cols[column])]
                assert rec.value == pytest.approx(finite.mean(), rel=1e-12) and rec.n == len(finite)
                assert rec.split == "test" and rec.basis == "per_example" and rec.higher_is_better is None
                assert rec.range == alignment.RANGES[metric]
                assert rec.extra["values"] == f"alignment/{model}/test.parquet" and rec.extra["column"] == column
                assert rec.extra["n_layers"] == layers and rec.extra["n_heads"] == heads
        assert recs[(model, "kq_probe_acc")].n == 15  # the held-out half
        assert recs[(model, "kq_mmd2")].n == 30
        assert "layer" not in recs[(model, "kq_mmd2")].extra
        assert recs[(model, "attn_entropy@L1H3")].extra["layer"] == 1
        assert recs[(model, "attn_entropy@L1H3")].extra["head"] == 3
    # the same ids for both models
    assert (pq.read_table(out / "alignment/baseline/test.parquet").column("id").to_pylist()
            == pq.read_table(out / "alignment/aligned/test.parquet").column("id").to_pylist())

    # a second run reads the stored values and never loads a model
    def refuse(*args, **kwargs):
        raise AssertionError("the cached alignment values should have been used")

    monkeypatch.setattr(alignment, "load", refuse)
    second = run(spec, paths, out, progress=False, suites=["alignment"])
    again = {(r.model, r.metric): r for r in second.records}
    assert again.keys() == recs.keys()
    assert all(again[k].value == recs[k].value or (again[k].value is None and recs[k].value is None) for k in recs)

    # the paired comparison bootstraps twin - baseline over the shared ids
    comp = compare(out, "baseline", "aligned", resamples=200, seed=0)
    row = comp.find("kq_mmd2", "test", "alignment")
    assert row["basis"] == "per_example" and row["n"] == 30 and row["verdict"] is not None
    assert row["ci_low"] is not None and row["ci_low"] <= row["delta"] <= row["ci_high"]
    assert row["delta"] == pytest.approx(recs[("aligned", "kq_mmd2")].value - recs[("baseline", "kq_mmd2")].value)
    probe = comp.find("kq_probe_acc", "test", "alignment")
    assert probe["n"] == 15 and probe["ci_low"] is not None

    # other settings are another cache key: the model is needed again
    with pytest.raises(AssertionError, match="cached alignment values"):
        run(_spec(tmp_path / "data2", SPEC.replace("num_examples = 30", "num_examples = 30\nscales = [1.0]")),
            paths, tmp_path / "run", progress=False, suites=["alignment"], overwrite=True)


def test_per_head_false_and_cache_metadata(models, tmp_path):
    from aligneval.runner import run

    settings = 'num_examples = 6\nper_head = false\nsplit = "dev"'
    spec = _spec(tmp_path / "data", SPEC.replace("num_examples = 30", settings))
    results = run(spec, {"baseline": str(models["baseline"])}, tmp_path / "run", progress=False, suites=["alignment"])
    names = sorted(r.metric for r in results.records)
    assert len(names) == 3 * (1 + TINY["num_hidden_layers"]) and all("H" not in n.split("@")[-1] for n in names)
    assert {r.split for r in results.records} == {"dev"}
    table = pq.read_table(tmp_path / "run/alignment/baseline/dev.parquet")
    meta = json.loads(table.schema.metadata[b"aligneval"])
    assert meta["payload"]["weights_sha256"] == results.models["baseline"].weights_sha256
    assert meta["payload"]["settings"]["seed"] == 3 and len(meta["key"]) == 64


@pytest.mark.parametrize("setting, message", [
    ("num_exampels = 5", "did you mean 'num_examples'"),
    ("num_examples = 1", "num_examples must be an integer >= 2"),
    ("scales = []", "scales must be a non-empty list"),
    ("scales = [1.0, -2.0]", "scales must be a non-empty list"),
    ("probe_c = nan", "probe_c must be a positive number"),
    ("probe_max_iter = 0", "probe_max_iter must be a positive integer"),
    ("qk_pattern = \"query\"", "--qk-pattern must be two module-name patterns"),
    ("split = \"tset\"", "did you mean 'test'"),
    ("seed = \"x\"", "seed must be an integer"),
    ("per_head = 1", "per_head: expected a boolean"),
])
def test_bad_settings_are_one_line_usage_errors(tmp_path, setting, message, capsys):
    from aligneval.cli import main
    from aligneval.spec import load_spec

    spec = _spec(tmp_path / "data", SPEC.replace("num_examples = 30", setting))
    with pytest.raises(UsageError) as err:
        load_spec(spec)
    assert message in err.value.message and "\n" not in err.value.message
    assert main(["suites", "validate", str(spec)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sample_is_seeded_and_halved():
    from aligneval.suites.alignment import sample

    pos, train = sample(50, 20, seed=7)
    pos2, train2 = sample(50, 20, seed=7)
    assert np.array_equal(pos, pos2) and np.array_equal(train, train2)
    assert len(pos) == 20 == len(set(pos)) and np.all(np.diff(pos) > 0) and train.sum() == 10
    assert not np.array_equal(sample(50, 20, seed=8)[0], pos)
    all_pos, all_train = sample(5, 200, seed=0)
    assert list(all_pos) == [0, 1, 2, 3, 4] and all_train.sum() == 2


def test_architecture_outside_the_registry_names_the_setting(tmp_path):
    from aligneval.suites import alignment
    from tests.tiny import tiny_model, make_tokenizer

    tokenizer = make_tokenizer(tmp_path)
    model = tiny_model("bert", vocab_size=len(tokenizer)).eval()
    model.config.model_type = "fancy-encoder"
    texts, train = ["the movie was good", "a dull plot", "great fun", "weak and tedious"], np.array([1, 0, 1, 0], bool)
    kwargs = dict(max_length=16, batch_size=4, scales=SCALES, probe_c=1.0, probe_max_iter=100)
    with pytest.raises(UsageError) as err:
        alignment.measure(model, tokenizer, texts, None, train, qk_pattern=None, **kwargs)
    assert "fancy-encoder" in err.value.message and 'qk_pattern = "QUERY,KEY"' in err.value.message
    values = alignment.measure(model, tokenizer, texts, None, train, qk_pattern="query,key", **kwargs)
    assert values["kq_mmd2"].shape == (4, TINY["num_hidden_layers"], TINY["num_attention_heads"])
    # a model aligneval trained with --qk-pattern carries it in its card
    card = {"hyperparameters": {"qk_pattern": "query,key"}}
    assert alignment._card_qk_pattern(alignment.ModelInfo("m", "x", card=card)) == "query,key"
