"""Today's architectures on tiny random configurations built by transformers itself: ModernBERT,
GPT-2, Llama, Qwen2, Qwen3, Mistral, Gemma 2, Gemma 3 (text) and Phi-3, the decoders with 2 key
heads for 4 query heads (grouped-query attention).

Each check has an independent reference: the model's own attention probabilities (rebuilt from the
captured Q and K with the model's own rotary embedding), a hand loop pairing each query head with
its group's key head, and transformers' own forward one example at a time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aligneval.align.hooks import ARCHITECTURES, attach, head_counts, arch_spec, parse_qk_pattern
from aligneval.align.train import align_pair
from aligneval.errors import UsageError
from tests.scripts import load_script
from tests.tiny import sentences, write_fixture
from tests.tiny_families import FAMILIES, HEADS, KV_HEADS, LAYERS, NO_GQA, family_config, make_family_model

GQA = [f for f in FAMILIES if f not in NO_GQA]
# families whose attention is softmax(rotary(q)·rotary(k)ᵀ·scaling + causal mask), or GPT-2's without rotary
ROTARY_DECODERS = ["llama", "qwen2", "qwen3", "mistral", "gemma2", "phi3"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One saved tiny model per family (seed 0), plus GPT-2 and Llama without any pad token."""
    root = tmp_path_factory.mktemp("families")
    built = {family: make_family_model(root, family) for family in FAMILIES}
    built.update({f"{family}-nopad": make_family_model(root, family, pad=False) for family in ("gpt2", "llama")})
    return built


def _batch(vocab: int = 60, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    return ids, mask


def test_registry_covers_todays_families():
    assert set(FAMILIES) <= set(ARCHITECTURES.names())
    for family in FAMILIES:
        heads, kv = head_counts(family_config(family, 100), arch_spec(family_config(family, 100)))
        assert (heads, kv) == (HEADS, HEADS if family in NO_GQA else KV_HEADS)


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_leaves_the_forward_alone_and_gives_matched_heads(family):
    torch.manual_seed(0)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(family_config(family, 100)).eval()
    ids, mask = _batch()
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
    with attach(model) as capture, torch.no_grad():
        hooked = model(input_ids=ids, attention_mask=mask).logits
        layers = capture.layers()
        k, q = capture.stacked()
    assert torch.equal(plain, hooked)
    assert len(layers) == LAYERS  # sliding-window and global layers alike
    for q_l, k_l in layers:
        assert q_l.shape == k_l.shape == (3, HEADS, 9, 32 // HEADS)
    assert k.shape == q.shape == (LAYERS, 3, HEADS, 9, 32 // HEADS)
    if family not in NO_GQA:  # the query heads of one group see the very same key head
        group = HEADS // KV_HEADS
        for _, k_l in layers:
            for h in range(HEADS):
                assert torch.equal(k_l[:, h], k_l[:, (h // group) * group])
            assert not torch.equal(k_l[:, 0], k_l[:, group])


@pytest.mark.parametrize("family", [*ROTARY_DECODERS, "gpt2"])
def test_captured_q_and_k_are_what_attention_uses(family):
    """Rebuild each layer's attention probabilities from the captured Q and K (each query head with
    its group's key head), the model's own rotary embedding and scaling, and a causal + padding
    mask: they equal the eager attention's own. Windows are made wider than the input and Gemma 2's
    logit soft-capping is off, so the mask is the causal one."""
    from transformers import AutoModelForSequenceClassification

    extra = {"attn_logit_softcapping": None} if family == "gemma2" else {}
    if family in ("mistral", "gemma2"):
        extra["sliding_window"] = 64
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(family_config(family, 100, **extra),
                                                           attn_implementation="eager").eval()
    ids, mask = _batch()
    with attach(model) as capture, torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        layers = capture.layers()
    length = ids.shape[1]
    allowed = torch.ones(length, length).tril().bool()[None, None] & mask.bool()[:, None, None, :]
    modeling = sys.modules[type(model).__module__]
    for index, ((q, k), probs) in enumerate(zip(layers, out.attentions)):
        if family == "gpt2":
            scaling = 1 / math.sqrt(q.shape[-1])
        else:
            cos, sin = model.base_model.rotary_emb(q, torch.arange(length)[None])
            q, k = modeling.apply_rotary_pos_emb(q, k, cos, sin)
            scaling = model.base_model.layers[index].self_attn.scaling
        scores = (q @ k.transpose(-1, -2) * scaling).masked_fill(~allowed, torch.finfo(q.dtype).min)
        rebuilt = torch.softmax(scores, dim=-1)
        rows = mask.bool()[:, None, :, None].expand_as(probs)
        assert torch.allclose(rebuilt[rows], probs[rows], atol=1e-5), (family, index)


FUSED = {"gpt2": "transformer.h.1.attn.c_attn.weight", "phi3": "model.layers.1.self_attn.qkv_proj.weight",
         "modernbert": "model.layers.1.attn.Wqkv.weight"}


@pytest.mark.parametrize("family", sorted(FUSED))
def test_alignment_gradient_reaches_exactly_the_key_slice_of_a_fused_projection(family):
    """gan detaches the queries, and nothing is captured above the top layer: so in the top layer's
    fused projection only the key rows (GPT-2's Conv1D: columns) get a gradient from the alignment
    term; the query and value slices get exactly zero."""
    from transformers import AutoModelForSequenceClassification

    from aligneval.align.game import build_game

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(family_config(family, 100)).train()
    ids, mask = _batch()
    batch = {"input_ids": ids, "attention_mask": mask}
    game = build_game(model, "gan", 1.0, {}, {"aux_lr": 1e-3, "aux_steps": 1}, 0, batch)
    model(**batch)
    game.alignment_term(mask).backward()
    game.capture.remove()
    grad = dict(model.named_parameters())[FUSED[family]].grad
    d = 32 // HEADS
    kv = HEADS if family in NO_GQA else KV_HEADS
    widths = [HEADS * d, kv * d, kv * d]
    q, k, v = grad.split(widths, dim=1 if family == "gpt2" else 0)
    assert torch.count_nonzero(q) == 0 and torch.count_nonzero(v) == 0
    assert k.abs().sum() > 0


def _hand_mmd2(x: np.ndarray, y: np.ndarray, scales=(0.5, 1.0, 2.0)) -> float:
    """Unbiased MMD² of two [n, d] clouds, RBF kernels at scales × the median squared distance over
    the distinct pairs of the pooled points (the alignment suite's definition), by plain loops."""
    n = len(x)
    d = lambda a, b: float(((a - b) ** 2).sum())  # noqa: E731
    pooled = [d(x[i], x[j]) for i in range(n) for j in range(i + 1, n)]
    pooled += [d(y[i], y[j]) for i in range(n) for j in range(i + 1, n)]
    pooled += [d(x[i], y[j]) for i in range(n) for j in range(n)]
    med = float(np.median(pooled)) or 1.0
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                for s in scales:
                    total += (math.exp(-d(x[i], x[j]) / (s * med)) + math.exp(-d(y[i], y[j]) / (s * med))
                              - math.exp(-d(x[i], y[j]) / (s * med)) - math.exp(-d(x[j], y[i]) / (s * med)))
    return total / (n * (n - 1))


# where each GQA layout keeps its raw queries and keys, read by our own hooks (not aligneval's)
RAW_SOURCES = {"llama": ("q_proj", "k_proj"), "qwen3": ("q_norm", "k_norm"), "phi3": ("qkv_proj", None)}


@pytest.mark.parametrize("family", sorted(RAW_SOURCES))
def test_suite_per_head_mmd_pairs_each_query_head_with_its_groups_key_head(folders, family):
    """The alignment suite's per-head K–Q MMD² equals a hand loop over examples, layers and query
    heads h that takes key head h // (H / H_kv) straight from the model's own key module (Llama:
    k_proj; Qwen3: k_norm, after the per-head norm; Phi-3: the k slice of the fused qkv_proj).

    Both run the model in float64. In float32 the suite's padded batch of 6 and the hand loop's
    one-example forwards round differently (the GEMMs block by shape and by the CPU's vector width),
    and an MMD² near 0 is a difference of O(1) kernel sums: measured, they then differed by up to
    8.8e-6 of max(|MMD²|, 1e-3) (Phi-3, on an AVX2 CPU; the test failed there). In float64 the worst
    of the three families is 4e-14, over seven orders inside the bound."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.suites.alignment import measure

    folder = folders[family]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval().double()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [t for t, _ in sentences(6, seed=9)]
    train = np.arange(6) < 3
    values = measure(model, tokenizer, texts, None, train, qk_pattern=None, max_length=32, batch_size=6,
                     scales=(0.5, 1.0, 2.0), probe_c=1.0, probe_max_iter=100)["kq_mmd2"]
    q_name, k_name = RAW_SOURCES[family]
    raw: dict[str, list] = {"q": [], "k": []}
    handles = []
    for name, module in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last == q_name:
            handles.append(module.register_forward_hook(lambda m, i, o: raw["q"].append(o.detach())))
        if last == k_name:
            handles.append(module.register_forward_hook(lambda m, i, o: raw["k"].append(o.detach())))
    d, group = 32 // HEADS, HEADS // KV_HEADS
    for e, text in enumerate(texts):  # one example at a time: no padding at all
        raw["q"].clear(), raw["k"].clear()
        with torch.no_grad():
            model(**tokenizer(text, return_tensors="pt"))
        for layer in range(LAYERS):
            out = raw["q"][layer][0]
            if family == "phi3":
                q, k = out[:, : HEADS * d].reshape(-1, HEADS, d), out[:, HEADS * d: (HEADS + KV_HEADS) * d]
                k = k.reshape(-1, KV_HEADS, d)
            else:
                q, k = out.reshape(out.shape[0], HEADS, d), raw["k"][layer][0].reshape(out.shape[0], KV_HEADS, d)
            for h in range(HEADS):
                expected = _hand_mmd2(k[:, h // group].double().numpy(), q[:, h].double().numpy())
                assert values[e, layer, h] == pytest.approx(expected, rel=1e-6, abs=1e-9), (e, layer, h)
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize("family", [*FAMILIES, "gpt2-nopad", "llama-nopad"])
def test_predictions_equal_transformers_one_example_at_a_time(folders, family):
    """aligneval's length-sorted, padded, truncated batches give each example the probabilities
    transformers' own forward gives it alone (a fresh load of the folder, unpadded). Without a pad
    token the stated rule pads with eos; alone, transformers needs no pad at all."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.predict import load_model, predict_probs

    folder = folders[family]
    texts = [t for t, _ in sentences(9, seed=4)] + ["the plot " * 20 + "good"]  # the last one is truncated
    model, tokenizer = load_model(folder)
    got = predict_probs(model, tokenizer, texts, max_length=16, batch_size=4, progress=False)
    reference_model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    reference_tokenizer = AutoTokenizer.from_pretrained(folder)
    for i, text in enumerate(texts):
        enc = reference_tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            logits = reference_model(**enc).logits.double()
        assert np.allclose(got[i], torch.softmax(logits, -1)[0].numpy(), atol=1e-5), (family, i)
    if family.endswith("-nopad"):
        assert reference_tokenizer.pad_token is None and reference_model.config.pad_token_id is None
        assert tokenizer.pad_token == tokenizer.eos_token and model.config.pad_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_conversion_and_zero_lambda_twin_is_bit_identical(folders, tmp_path, family):
    """align_pair converts and trains each family: the λ = 0 twin equals the baseline bit for bit,
    the λ = 1 twin differs, every saved model is a plain transformers model of the original class,
    and the card records the padding rule."""
    from transformers import AutoModelForSequenceClassification

    train = write_fixture(tmp_path, n=32)
    result = align_pair(str(folders[family]), train, tmp_path / "out", variant="gan", lam="0,1", max_steps=3,
                        batch_size=8, lr=1e-3, warmup_ratio=0.0, progress=False)
    run = result.runs[0]
    base = load_file(str(run.baseline / "model.safetensors"))
    zero = load_file(str(run.twins[0.0] / "model.safetensors"))
    one = load_file(str(run.twins[1.0] / "model.safetensors"))
    assert base.keys() == zero.keys() and all(torch.equal(base[n], zero[n]) for n in base)
    assert any(not torch.equal(base[n], one[n]) for n in base)
    original = type(AutoModelForSequenceClassification.from_pretrained(folders[family]))
    assert type(AutoModelForSequenceClassification.from_pretrained(run.twins[1.0])) is original
    card = json.loads((run.twins[1.0] / "alignment.json").read_text())
    pad = "<|endoftext|>" if family == "qwen2" else "[PAD]"  # Qwen2's tokenizer pads with its eos, as the real one
    assert card["padding"] == {"side": "right", "pad_token_id": 0, "pad_token": pad, "pad_is_eos": family == "qwen2"}


def test_a_model_without_pad_token_trains_with_pad_eos_written_in_the_card(folders, tmp_path):
    train = write_fixture(tmp_path, n=32)
    result = align_pair(str(folders["gpt2-nopad"]), train, tmp_path / "out", variant="mmd", lam=1.0, max_steps=2,
                        batch_size=8, progress=False)
    card = json.loads((result.aligned / "alignment.json").read_text())
    assert card["padding"] == {"side": "right", "pad_token_id": 3, "pad_token": "[SEP]", "pad_is_eos": True}
    saved = json.loads((result.aligned / "config.json").read_text())
    assert saved["pad_token_id"] == 3


def test_qk_pattern_says_fused_and_head_counts(folders):
    from transformers import AutoModelForSequenceClassification

    spec = parse_qk_pattern("fused=qkv_proj,heads=4,kv_heads=2")
    assert spec.fused and (spec.query, spec.heads, spec.kv_heads) == ("qkv_proj", 4, 2)
    assert parse_qk_pattern("query,key") == parse_qk_pattern(" query , key ")  # the old form
    for bad in ("q_proj", "fused=x,q", "q,k,heads=0", "q,k,kv_heads=two", "q,k,colour=red", "fused=("):
        with pytest.raises(UsageError):
            parse_qk_pattern(bad)
    model = AutoModelForSequenceClassification.from_pretrained(folders["phi3"]).eval()
    ids, mask = _batch()
    with torch.no_grad():
        with attach(model) as registered:
            model(input_ids=ids, attention_mask=mask)
            expected = registered.layers()
        model.config.model_type = "phi3-lookalike"  # outside the registry: named by hand
        with attach(model, "fused=qkv_proj,kv_heads=2") as named:
            model(input_ids=ids, attention_mask=mask)
            got = named.layers()
    assert all(torch.equal(a, b) for pair, other in zip(expected, got) for a, b in zip(pair, other))
    with pytest.raises(UsageError, match="cannot be grouped"):
        attach(model, "fused=qkv_proj,kv_heads=3")


# ---------- trained effects (slow) ------------------------------------------------------------------

def _mean_mmd(folder, texts, train_half) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.suites.alignment import measure

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    values = measure(model, tokenizer, texts, None, train_half, qk_pattern=None, max_length=32, batch_size=32,
                     scales=(0.5, 1.0, 2.0), probe_c=1.0, probe_max_iter=200)
    return float(np.nanmean(values["kq_mmd2"]))


# gan (R1 + 5 discriminator updates, issue 21) at the every-variant test's budget: twin ÷ baseline K–Q
# MMD² at λ = 0.1 / 1 on tiny models of seeds 0, 1, 2 (benchmarks/family_alignment.py; every run in
# benchmarks/results/family_alignment-2026-12-06-*.json). One figure where both dependency sets agree
# to two decimals, "current | legacy" where they differ. The test runs seed 0; the worst cell over both
# sets and three seeds was 0.79. With gan's below=0.1 (the default since; λ = 0.1 unchanged), λ = 1 on
# the current set (family_alignment-2026-12-06-below.json) is in GAN_BELOW_MEASURED: seed 0's worst is
# 0.79 (gemma2), a margin of 0.06, but Phi-3's seed 2 is at 0.87, and over ten seeds GPT-2 and Gemma 2
# have seeds above 0.85 with or without the cap (docs/align.md): this bound holds on seed 0, not on
# every seed.
GAN_MEASURED = {
    "modernbert": "0.30/-0.12, -0.51/-0.06, 0.54/0.02 | 0.29/-0.02, 0.24/-0.13, 0.33/-0.03",
    "gpt2": "0.75/0.58, 0.62/0.28, 0.66/0.42",
    "llama": "0.56/0.32, 0.12/-0.11, 0.48/0.33",
    "qwen2": "0.79/0.48, 0.60/0.33, 0.65/0.44",  # with its Qwen2-shaped BPE (tests/tiny_families.py)
    "qwen3": "0.26/0.15, -0.06/-0.14, 0.17/-0.06",
    "mistral": "0.53/0.04, 0.46/0.36, 0.57/0.16",
    "gemma2": "0.74/0.75, 0.62/0.64, 0.63/0.50 | 0.70/0.73, 0.57/0.58, 0.63/0.52",
    "gemma3_text": "0.61/0.18, 0.32/0.24, 0.38/0.40",
    "phi3": "0.58/0.43, 0.25/0.38, 0.67/0.79",
}
GAN_BELOW_MEASURED = {  # λ = 1, seeds 0, 1, 2, below=0.1 (families whose q/k come from linear projections)
    "modernbert": "-0.03, -0.41, 0.06", "gpt2": "0.74, 0.35, 0.56", "llama": "0.46, 0.06, 0.31",
    "qwen2": "0.48, 0.36, 0.48", "mistral": "0.21, 0.46, 0.23", "gemma2": "0.79, 0.60, 0.55",
    "phi3": "0.47, 0.34, 0.87",
}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_gan_twins_have_keys_closer_to_queries(folders, tmp_path, family):
    """gan at λ = 0.1 and 1, the every-variant test's budget (80 steps, batch 16, lr 1e-3, default
    auxiliary settings): each twin's K–Q MMD² (alignment suite, 60 held-out sentences) is below 0.85 ×
    the baseline's. Measured twin/baseline per seed and stack in GAN_MEASURED; mmd is checked end to
    end below."""
    train = write_fixture(tmp_path, n=400)
    result = align_pair(str(folders[family]), train, tmp_path / "gan", variant="gan", lam="0.1,1", max_steps=80,
                        batch_size=16, lr=1e-3, warmup_ratio=0.0, progress=False)
    texts = [t for t, _ in sentences(60, seed=5)]
    train_half = np.arange(60) < 30
    run = result.runs[0]
    baseline = _mean_mmd(run.baseline, texts, train_half)
    ratios = {lam: _mean_mmd(folder, texts, train_half) / baseline for lam, folder in run.twins.items()}
    assert all(r < 0.85 for r in ratios.values()), (ratios, "measured before:", GAN_MEASURED[family],
                                                    GAN_BELOW_MEASURED.get(family))


TEXTATTACK = importlib.util.find_spec("textattack") is not None  # the legacy stack only (transformers < 5)


def _spec(tmp_path, test_data, attack: bool):
    suites = ('[suites.accuracy]\n\n[suites.alignment]\nnum_examples = 24\nprobe_max_iter = 200\n')
    if attack:
        suites += '\n[suites.adversarial]\nrecipes = ["deepwordbug"]\nnum_examples = 3\nquery_budget = 25\n'
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "families"\nseed = 0\nmax_length = 32\nbatch_size = 16\n\n'
                    f'[splits.test]\nrole = "test"\npath = "{test_data}"\n\n{suites}')
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_align_run_report_end_to_end(folders, tmp_path, family, monkeypatch, capsys):
    """`aligneval align` (mmd, λ = 0.1 and 1, the every-variant test's budget: 80 steps, batch 16,
    lr 1e-3) → `run` (accuracy, alignment and, where TextAttack installs, a deepwordbug attack) →
    `report`, through the CLI: each twin's K–Q MMD² (the alignment suite on held-out sentences; the
    λ = 1 twin's in the run) is below 0.85 × the baseline's, the alignment records have one entry
    per query head, and the report has its Alignment section.

    Measured on these tiny models, seeds 0, 1, 2 (docs/align.md): mmd twins end at −4.1× to −0.19×
    the baseline (a negative unbiased MMD²: keys and queries indistinguishable), far under 0.85."""
    from aligneval.cli import main

    monkeypatch.setenv("ALIGNEVAL_CACHE", "off")
    train = write_fixture(tmp_path, n=400)
    test_data = write_fixture(tmp_path, n=48, seed=5, name="test")
    out = tmp_path / "ckpt"
    assert main(["align", "--model", str(folders[family]), "--train", str(train), "--out", str(out), "--variant",
                 "mmd", "--lambda", "0.1,1", "--max-steps", "80", "--batch-size", "16", "--lr", "1e-3",
                 "--warmup-ratio", "0", "--no-progress"]) == 0
    # λ = 0.1: measured directly with the suite's function; λ = 1: through the whole run and report
    texts, train_half = [t for t, _ in sentences(60, seed=5)], np.arange(60) < 30
    assert _mean_mmd(out / "aligned-lam0.1", texts, train_half) < 0.85 * _mean_mmd(out / "baseline", texts, train_half)
    run_dir = tmp_path / "run"
    models = {"baseline": out / "baseline", "aligned": out / "aligned-lam1"}
    assert main(["run", str(_spec(tmp_path, test_data, TEXTATTACK)),
                 *[arg for name, path in models.items() for arg in ("--model", f"{name}={path}")],
                 "--out", str(run_dir), "--no-progress"]) == 0
    records = json.loads((run_dir / "results.json").read_text())["records"]
    mmd = {r["model"]: r["value"] for r in records if r["suite"] == "alignment" and r["metric"] == "kq_mmd2"}
    assert mmd["aligned"] < 0.85 * mmd["baseline"], mmd
    heads = {r["extra"]["head"] for r in records if r["suite"] == "alignment" and "head" in r.get("extra", {})}
    assert heads == set(range(HEADS))
    if TEXTATTACK:
        attacked = [r for r in records if r["suite"] == "adversarial"]
        assert {r["model"] for r in attacked} == set(models)
    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(report), "--resamples", "50"]) == 0
    assert '<section id="alignment">' in (report / "report.html").read_text()
    assert "Alignment" in (report / "report.md").read_text()


def test_readme_lists_exactly_the_registry():
    """README.md's architecture table is the one scripts/supported_architectures.py generates from
    the registry (run it with --write after adding an entry)."""
    module = load_script("scripts/supported_architectures.py")
    block = module.readme_block(module.README.read_text())
    assert block == module.block()
    for name in ARCHITECTURES.names():
        assert f"| `{name}` |" in block
    assert "real weights (all-MiniLM-L6-v2)" in block


def test_attack_wrapper_pads_a_model_without_pad_token_like_one_example_at_a_time(folders):
    """The attack path loads through the same rule: a GPT-2 without a pad token gets pad = eos and
    scores a batch of different lengths as transformers scores each text alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.attack.wrapper import BatchedClassifier, load_classifier

    folder = folders["gpt2-nopad"]
    model, tokenizer = load_classifier(folder, device="cpu")
    texts = [t for t, _ in sentences(5, seed=2)]
    got = BatchedClassifier(model, tokenizer, batch_size=5)(texts)
    reference = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    reference_tokenizer = AutoTokenizer.from_pretrained(folder)
    for i, text in enumerate(texts):
        with torch.no_grad():
            logits = reference(**reference_tokenizer(text, return_tensors="pt")).logits[0]
        assert np.allclose(got[i], logits.numpy(), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama", "modernbert", "qwen3"])
def test_freeze_layers_freezes_the_embeddings_and_bottom_layers(family):
    from transformers import AutoModelForSequenceClassification

    from aligneval.align.hooks import encoder_layers, freeze_bottom

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(family_config(family, 100, **(
        {"n_layer": 3} if family == "gpt2" else {"num_hidden_layers": 3})))
    freeze_bottom(model, 2)
    layers = encoder_layers(model, arch_spec(model.config))
    assert len(layers) == 3
    assert not any(p.requires_grad for layer in layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    embedding = model.get_input_embeddings()
    assert not embedding.weight.requires_grad
    ids, mask = _batch()
    with attach(model, trainable_only=True) as capture:
        model(input_ids=ids, attention_mask=mask)
        assert len(capture.layers()) == 1
