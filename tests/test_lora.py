"""LoRA twins (peft): settings, the q/k capture on adapted projections, λ = 0 twins identical, λ > 0
twin different with a smaller K–Q gap, merged folders that load with plain transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from aligneval.align.hooks import attach
from aligneval.align.lora import LoraSettings, adapt, for_saving, head_modules, parse_lora
from aligneval.align.cards import CARD_NAME
from aligneval.align.train import align_pair
from aligneval.errors import UsageError
from tests.scripts import load_script
from tests.tiny import make_tiny_model, sentences, tiny_model, write_fixture

FAST = dict(max_steps=4, batch_size=8, lr=1e-3, warmup_ratio=0.0, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    return {"model": make_tiny_model(tmp), "train": write_fixture(tmp, n=48), "tmp": tmp}


def test_settings_parse_and_bad_ones_fail_in_one_line():
    assert parse_lora("r=8,alpha=16") == LoraSettings(8, 16.0, 0.0, None)
    assert parse_lora("r=4, alpha=8, dropout=0.1, targets=query+value") == LoraSettings(4, 8.0, 0.1, ("query", "value"))
    assert parse_lora(None) is None and parse_lora("") is None
    for bad, needle in (("r=0", "r must be"), ("alpah=8", "did you mean 'alpha'"), ("r=8,alpha", "KEY=VALUE"),
                        ("alpha=-1", "alpha must be positive"), ("dropout=1", "dropout must lie"),
                        ("r=2.5", "whole number"), ("alpha=nan", "finite")):
        with pytest.raises(UsageError, match=needle) as err:
            parse_lora(bad)
        assert "\n" not in err.value.message


def test_adapters_sit_on_the_registry_q_k_projections_and_the_head_trains():
    model = tiny_model()
    wrapped = adapt(model, LoraSettings(r=4, alpha=8), seed=0)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or ".classifier." in n for n in trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_" in n}
    assert adapted == {"query", "key"}  # BERT's q/k registry entry
    assert head_modules(tiny_model()) == ["classifier"] and head_modules(tiny_model("distilbert")) == [
        "pre_classifier", "classifier"]
    with pytest.raises(UsageError, match="leave the query/key projection"):
        adapt(tiny_model(), LoraSettings(targets=("value",)), seed=0)


def test_same_seed_same_adapter_init_and_the_global_stream_is_untouched():
    plain = tiny_model()  # (builds under its own manual_seed)
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    a = adapt(plain, LoraSettings(), seed=13)
    assert torch.equal(torch.rand(3), before)  # adapter init draws from its own stream
    b = adapt(tiny_model(), LoraSettings(), seed=13)
    c = adapt(tiny_model(), LoraSettings(), seed=14)
    sa, sb, sc = (dict(m.named_parameters()) for m in (a, b, c))
    names = [n for n in sa if "lora_A" in n]
    assert all(torch.equal(sa[n], sb[n]) for n in names) and not all(torch.equal(sa[n], sc[n]) for n in names)


def test_capture_records_the_adapted_projection_and_its_gradient_reaches_the_adapters():
    model = adapt(tiny_model(), LoraSettings(r=4, alpha=8), seed=0).eval()  # no dropout: two forwards agree
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero (the adapter adds nothing); make it add something
            with torch.no_grad():
                p.normal_(0, 0.5)
    ids = torch.randint(5, 60, (2, 9))
    inner = model.base_model.model.bert.encoder.layer[0].attention.self.query
    base_out = []
    handle = inner.base_layer.register_forward_hook(lambda m, i, o: base_out.append(o.detach()))
    with attach(model, trainable_only=True) as capture:
        model(input_ids=ids)
        k, q = capture.stacked()
        assert k.shape[:2] == (2, 2)  # two layers, batch of two
        # the captured queries are the adapter layer's output: base projection + B·A·x·alpha/r
        x = model.base_model.model.bert.embeddings(input_ids=ids)
        expected = inner(x)
        got = q[0].transpose(1, 2).reshape(2, 9, -1)
        torch.testing.assert_close(got, expected)
        assert not torch.allclose(got, base_out[0])
        (k - q).pow(2).mean().backward()
    handle.remove()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("variant", ["mmd", "gan"])
def test_lambda_zero_twins_identical_and_merged_folders_load_with_plain_transformers(tiny, tmp_path, variant):
    result = align_pair(str(tiny["model"]), tiny["train"], tmp_path / "pair", variant=variant, lam=0.0,
                        lora="r=8,alpha=16", **dict(FAST, grad_accum=2))
    base, twin = load_file(str(result.baseline / "model.safetensors")), load_file(str(result.aligned / "model.safetensors"))
    start = load_file(str(tiny["model"] / "model.safetensors"))
    assert base.keys() == twin.keys() == start.keys()  # merged: no adapter tensors left
    assert all(torch.equal(base[n], twin[n]) for n in base)
    moved = {n for n in start if not torch.equal(start[n], base[n])}
    # only the adapted projections (merged) and the head changed; everything else is the start
    assert moved and all(n.endswith(("query.weight", "key.weight")) or n.startswith("classifier.") for n in moved)
    assert any(n.endswith("query.weight") for n in moved)
    card = json.loads((result.aligned / CARD_NAME).read_text())
    assert card["lora"]["r"] == 8 and card["lora"]["alpha"] == 16.0 and card["lora"]["saved"].startswith("merged")
    assert card["lora"]["resolved_targets"] == sorted(
        f"bert.encoder.layer.{i}.attention.self.{p}" for i in range(2) for p in ("query", "key"))
    assert 0 < card["lora"]["trainable_fraction"] < 0.2 and card["hyperparameters"]["lora"]["r"] == 8
    model = AutoModelForSequenceClassification.from_pretrained(result.aligned, use_safetensors=True)
    assert type(model).__name__ == "BertForSequenceClassification"


def test_merged_model_computes_what_the_adapted_model_computed(tmp_path):
    model = adapt(tiny_model(), LoraSettings(r=4, alpha=8), seed=0).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids = torch.randint(5, 60, (3, 11))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    merged = for_saving(model)
    merged.save_pretrained(tmp_path / "m", safe_serialization=True)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)


def _kq_gap(folder, texts):
    from aligneval.suites.alignment import measure

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    values = measure(model, AutoTokenizer.from_pretrained(folder), texts, None, np.arange(len(texts)) % 2 == 0,
                     qk_pattern=None, max_length=32, batch_size=8, scales=(0.5, 1.0, 2.0), probe_c=1.0,
                     probe_max_iter=200)
    return float(np.nanmean(values["kq_mmd2"]))


def test_positive_lambda_twin_differs_and_its_k_q_gap_is_smaller(tiny, tmp_path):
    """mmd at λ = 1, 6 steps, lr 1e-3 on the tiny BERT: twin ÷ baseline K–Q MMD² on held-out sentences
    measured 0.55, 0.50, 0.33 for seeds 13, 21, 42 (transformers 4.57); bound 0.8."""
    result = align_pair(str(tiny["model"]), tiny["train"], tmp_path / "pair", variant="mmd", lam=1.0,
                        lora="r=8,alpha=16", **dict(FAST, max_steps=6))
    base, twin = load_file(str(result.baseline / "model.safetensors")), load_file(str(result.aligned / "model.safetensors"))
    assert any(not torch.equal(base[n], twin[n]) for n in base if n.endswith("key.weight"))
    texts = [t for t, _ in sentences(24, seed=9)]
    assert _kq_gap(result.aligned, texts) < 0.8 * _kq_gap(result.baseline, texts)


def test_lora_flag_and_its_bad_combinations_on_the_command_line(tiny, tmp_path, capsys):
    from aligneval.cli import main

    args = ["align", "--model", str(tiny["model"]), "--train", str(tiny["train"]), "--max-steps", "2",
            "--batch-size", "8", "--no-progress"]
    assert main([*args, "--lora", "r=4,alpha=8", "--device", "cpu", "--out", str(tmp_path / "ok")]) == 0
    card = json.loads((tmp_path / "ok" / "aligned" / CARD_NAME).read_text())
    assert card["lora"]["r"] == 4 and card["lora"]["alpha"] == 8.0
    capsys.readouterr()
    for extra, needle in ((["--lora", "r=4,alpha"], "KEY=VALUE"),
                          (["--lora", "r=4", "--freeze-layers", "1"], "does not combine")):
        code = main([*args, *extra, "--out", str(tmp_path / "bad")])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.slow
def test_lora_multiple_choice_pair_in_two_processes(tmp_path):
    """`align --num-processes 2 --lora ... --task multiple-choice`: at λ = 0 the merged twins are
    bit-identical, at λ > 0 they differ; the card says two processes; the folders load with
    AutoModelForMultipleChoice."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from transformers import AutoModelForMultipleChoice

    from tests.tiny_choices import write_swag

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    model = make_tiny_model(tmp_path)
    args = [sys.executable, "-m", "aligneval", "align", "--model", str(model), "--train",
            str(write_swag(tmp_path, n=32)), "--task", "multiple-choice", "--lora", "r=4,alpha=8",
            "--max-steps", "3", "--batch-size", "4", "--lr", "1e-3", "--max-length", "24", "--no-progress",
            "--num-processes", "2", "--variant", "mmd"]
    for lam in ("0", "1"):
        out = tmp_path / f"pair-{lam}"
        proc = subprocess.run([*args, "--lambda", lam, "--out", str(out)], env=env, capture_output=True, text=True,
                              cwd=root, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        base = load_file(str(out / "baseline" / "model.safetensors"))
        twin = load_file(str(out / "aligned" / "model.safetensors"))
        assert all(torch.equal(base[n], twin[n]) for n in base) == (lam == "0")
        card = json.loads((out / "aligned" / CARD_NAME).read_text())
        assert card["hyperparameters"]["processes"] == 2 and card["task"] == "multiple-choice"
        assert card["lora"]["r"] == 4
        assert type(AutoModelForMultipleChoice.from_pretrained(out / "aligned")).__name__ == "BertForMultipleChoice"


def test_lora_step_benchmark_runs_and_counts_the_adapters(capsys):
    """benchmarks/lora_step.py on the tiny BERT (no timing asserted): its trainable fraction is the
    hand count: rank-8 A [8, 32] and B [32, 8] on 2 layers × (query, key), plus the 2-label head."""
    bench = load_script("benchmarks/lora_step.py")
    assert bench.main(["--model", "tiny-bert", "--steps", "1", "--batch-size", "2", "--length", "8", "--threads",
                       "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    total = sum(p.numel() for p in bench.build_model("tiny-bert")[0].parameters())
    trainable = 2 * 2 * (8 * 32 + 32 * 8) + (32 * 2 + 2)
    assert doc["trainable_fraction"]["lora-aligned"] == pytest.approx(trainable / total, abs=1e-6)
    assert doc["trainable_fraction"]["full-baseline"] == 1.0
    assert set(doc["ratio_to_full_baseline"]) == {"full-aligned", "lora-baseline", "lora-aligned"}
