"""The min–max game really aligns: the auxiliary players learn, λ reaches only the encoder's side,
λ/L per layer whatever is frozen, and on a tiny BERT every variant at its default settings leaves
the twin's keys measurably closer to its queries than the baseline's (measured by the independent
`alignment` suite, not by the training loss). Also the λ grid (dose–response) layout."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aligneval.align.batches import collate, tokenize
from aligneval.align.cards import LOG_NAME
from aligneval.align.game import AUX_LR_RATIO, aux_updates, build_aux_optimizer, build_game
from aligneval.align.plan import check_lambdas
from aligneval.align.train import align_pair
from aligneval.align.variants import build_aligner
from aligneval.errors import UsageError
from tests.tiny import make_tiny_model, sentences, tiny_model, write_fixture

VARIANTS = ("gan", "ct", "ct-heads", "combine", "mmd", "sinkhorn")


def _clouds(shift: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(2, 4, 4, 10, 8, generator=g) + shift
    q = torch.randn(2, 4, 4, 10, 8, generator=g)
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[1, 6:] = 0
    return k, q, mask


def test_discriminator_learns_to_tell_separable_keys_from_queries():
    """Held fixed clouds a distance apart: the gan discriminator's own optimizer takes its
    K-vs-Q accuracy from chance to far above it (the v0.1 shared optimizer never left chance)."""
    torch.manual_seed(0)
    aligner = build_aligner("gan", 2, 8).train()
    aligner.seed(1)
    optimizer, params = build_aux_optimizer(aligner, {"aux_lr": 3e-3})
    k, q, mask = _clouds(1.0)
    _, first = aux_updates(aligner, optimizer, params, k, q, mask, 1, 1.0)
    for _ in range(150):
        loss, accuracy = aux_updates(aligner, optimizer, params, k, q, mask, 1, 1.0)
    assert float(first.mean()) < 0.6
    assert float(accuracy.min()) > 0.8  # Bayes accuracy for a unit shift in 8 dims is Φ(√8/2) ≈ 0.92
    assert float(loss.mean()) < 2 * np.log(2) - 0.3


@pytest.mark.parametrize("variant", ["ct", "ct-heads"])
def test_critic_raises_the_transport_cost(variant):
    torch.manual_seed(0)
    aligner = build_aligner(variant, 2, 8).train()
    optimizer, params = build_aux_optimizer(aligner, {"aux_lr": 3e-3})
    k, q, mask = _clouds(1.0)
    _, first = aux_updates(aligner, optimizer, params, k, q, mask, 1, 1.0)
    for _ in range(100):
        _, value = aux_updates(aligner, optimizer, params, k, q, mask, 1, 1.0)
    assert float(value.mean()) > float(first.mean()) + 0.1  # the critic climbs CT


def _game_step(model, lam: float, batch, labels):
    # below=off: the paper's objective, λ everywhere (the default cap has its own tests, test_align_reach.py)
    game = build_game(model, "gan", lam, {"below": "off"}, {"aux_lr": 1e-3, "aux_steps": 1}, 13, batch)
    loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
    term = game.alignment_term(batch["attention_mask"])
    term.backward()
    game.capture.remove()
    return game, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, loss


def test_lambda_scales_only_the_encoders_side(tiny):
    """Same model, same batch, λ = 0.1 and λ = 1: the discriminator takes the identical update
    (λ never reaches it) and the encoder's alignment gradient is exactly 10× larger."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.data import Examples

    base = AutoModelForSequenceClassification.from_pretrained(tiny["model"]).train()
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    rows = sentences(8)
    examples = Examples(ids=[str(i) for i in range(8)], texts=[t for t, _ in rows],
                        labels=np.array([y for _, y in rows]), label_names=["0", "1"], source="t")
    batch, labels = collate(tokenize(tokenizer, examples, 32), list(range(8)))
    results = {}
    for lam in (0.1, 1.0):
        model = copy.deepcopy(base)
        torch.manual_seed(1)
        results[lam] = _game_step(model, lam, batch, labels)
    (g1, grads1, _), (g10, grads10, _) = results[0.1], results[1.0]
    for a, b in zip(g1.aligner.parameters(), g10.aligner.parameters()):
        assert torch.equal(a, b)
    keys = [n for n in grads1 if "attention.self.key" in n]
    assert keys
    for name in keys:
        assert torch.allclose(grads10[name], 10 * grads1[name], rtol=1e-5, atol=1e-9), name
    # queries are detached in the gan game: the top layer's query projection, upstream of no key,
    # gets nothing from the alignment term
    assert not any("layer.1.attention.self.query" in n for n in grads1)


def test_each_layer_weighs_lambda_over_all_layers_whatever_is_frozen():
    from aligneval.align.hooks import freeze_bottom

    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    for frozen in (0, 1):
        model = tiny_model()
        freeze_bottom(model, frozen)
        game = build_game(model, "mmd", 0.6, {}, {"aux_lr": 1e-3, "aux_steps": 1}, 0, batch)
        assert game.layer_weight == pytest.approx(0.6 / 2)  # the tiny BERT has 2 layers
        assert len(game.capture._handles) == 2 * (2 - frozen)
        game.capture.remove()


@pytest.mark.parametrize("text,expected", [("0.01,0.1,1", (0.01, 0.1, 1.0)), ("0", (0.0,)), ("1e-2, 1", (0.01, 1.0))])
def test_lambda_lists_parse(text, expected):
    assert check_lambdas(text) == expected


@pytest.mark.parametrize("text", ["0.1,0.1", "0.1,,0.2", "nan", "-1", "0.1,inf", "", "a,b"])
def test_bad_lambda_lists_are_refused(text):
    with pytest.raises(UsageError, match="--lambda"):
        check_lambdas(text)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("game")
    return {"model": str(make_tiny_model(tmp)), "train": write_fixture(tmp, n=400), "tmp": tmp}


def _mean_mmd(folder, texts, train_half):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.suites.alignment import measure

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    values = measure(model, tokenizer, texts, None, train_half, qk_pattern=None, max_length=32, batch_size=32,
                     scales=(0.5, 1.0, 2.0), probe_c=1.0, probe_max_iter=200)
    return float(np.nanmean(values["kq_mmd2"]))


# The every-variant test: three tiny BERTs (random initialisations of seeds 0, 1, 2), each twin at
# λ = 0.1 and 1 against its own baseline, 80 steps at lr 1e-3, every variant at its defaults.
TINY_SEEDS = (0, 1, 2)
GAME = dict(max_steps=80, batch_size=16, lr=1e-3, warmup_ratio=0.0, progress=False)
# Each twin must end at or below BOUNDS[variant] × its baseline's K–Q MMD² on held-out sentences: 0.7
# (issue 21's target) for every variant that matches each head's keys to its queries; ct-heads matches
# the heads at each token instead, which moves the within-head gap less, so 0.85. Measured, twin ÷
# baseline over the tiny models of seeds 0, 1, 2, 1 thread float32 as this test runs:
#   gan       λ = 0.1: 0.17, 0.16, 0.05    λ = 1: 0.13, 0.15, 0.06  (5 updates per step and below=0.1, the
#             defaults; λ = 1 with below=off: 0.11, 0.05, 0.02; with 1 update and below=off: −0.00, 0.07, 0.06
#             and −0.02, 0.04, −0.03)
#   ct        λ = 0.1: 0.02, −0.03, −0.06  λ = 1: −0.02, −0.04, −0.11
#   ct-heads  λ = 0.1: 0.59, 0.17, 0.62    λ = 1: 0.68, 0.18, 0.47
#   combine   λ = 0.1: 0.09, −0.00, −0.04  λ = 1: 0.10, 0.01, 0.02
#   mmd       λ = 0.1: −0.60, −0.33, −0.70 λ = 1: −0.62, −0.34, −0.71
#   sinkhorn  λ = 0.1: −0.08, −0.05, −0.10 λ = 1: −0.05, −0.05, −0.08
# With 2 torch threads instead of 1 (benchmarks/thread_spread.py, results/thread_spread-2026-12-06.json: the
# same sweep side by side), the largest change of any cell was gan 0.024, ct 0.050, ct-heads 0.118, combine
# 0.047, mmd and sinkhorn 0.000; the worst cell over both thread counts: gan 0.17, ct 0.02, ct-heads 0.68,
# combine 0.10 (each below its bound by at least 0.17). gan with below=0.1 (its second run there): largest
# change 0.028, worst cell 0.169 (λ = 1, seed 1, 2 threads).
# The same in float64 (other rounding, a different trajectory): gan (1 update) 0.10, 0.06, 0.08 / 0.08, 0.01, −0.01;
# ct −0.01, −0.04, −0.07 / 0.03, −0.04, −0.10; ct-heads 0.34, 0.11, 0.38 / 0.37, 0.14, 0.74 (its worst case:
# ct-heads is chaotic, 0.47 → 0.74 on one model from rounding alone, hence its wider bound).
# (before issue 21: gan without R1 up to 0.43 at λ = 1; ct with one critic update 0.38–0.83 at λ = 0.1 and
# 0.61–1.48 at λ = 1). A negative ratio is an unbiased MMD² estimate below 0: keys and queries as close
# as the estimator can tell.
BOUNDS = {"gan": 0.7, "ct": 0.7, "ct-heads": 0.85, "combine": 0.7, "mmd": 0.7, "sinkhorn": 0.7}


@pytest.fixture(scope="module")
def game_models(tmp_path_factory):
    """{seed: (model folder, shared baseline folder, baseline K–Q MMD²)}, the held-out texts and probe half;
    each tiny model's baseline is trained once (as the mmd grid's) and shared by every variant's grid."""
    tmp = tmp_path_factory.mktemp("every-variant")
    train = write_fixture(tmp, n=400)
    texts = [t for t, _ in sentences(60, seed=5)]
    train_half = np.zeros(60, bool)
    train_half[:30] = True
    models = {}
    for seed in TINY_SEEDS:
        folder = make_tiny_model(tmp / f"model-{seed}", seed=seed)
        run = align_pair(str(folder), train, tmp / f"mmd-{seed}", variant="mmd", lam="0.1,1", **GAME).runs[0]
        models[seed] = (folder, run.baseline, _mean_mmd(run.baseline, texts, train_half))
    return {"models": models, "train": train, "texts": texts, "train_half": train_half, "tmp": tmp}


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_aligns_three_tiny_berts_at_its_defaults(game_models, variant):
    """On each of three tiny BERTs, at λ = 0.1 and at λ = 1, the twin's K–Q MMD² (the independent
    `alignment` suite, held-out sentences) is at most BOUNDS[variant] × its baseline's, and the auxiliary
    players (gan's discriminator, the ct family's critic) learn."""
    tmp = game_models["tmp"]
    ratios = {}
    for seed, (folder, baseline_folder, baseline) in game_models["models"].items():
        out = tmp / f"{variant}-{seed}"
        if not out.exists():  # the mmd grid trained the baseline; every other grid reuses it
            out.mkdir()
            (out / "baseline").symlink_to(baseline_folder, target_is_directory=True)
        run = align_pair(str(folder), game_models["train"], out, variant=variant, lam="0.1,1", **GAME).runs[0]
        assert run.trained == ([] if variant == "mmd" else ["aligned-lam0.1", "aligned-lam1"])
        for lam, twin_folder in run.twins.items():
            ratios[seed, lam] = _mean_mmd(twin_folder, game_models["texts"], game_models["train_half"]) / baseline
            log = [json.loads(line) for line in (twin_folder / LOG_NAME).read_text().splitlines()]
            card = json.loads((twin_folder / "alignment.json").read_text())
            assert card["aux"]["aux_lr"] == pytest.approx(AUX_LR_RATIO * 1e-3)
            diagnostic = [float(np.mean(r["diagnostic_layers"])) for r in log]
            if variant == "gan":  # the discriminator tells keys from queries better than chance, for a while:
                # with R1 and keys that follow it, its best accuracy was 0.59–0.70 over these models with one
                # update per step, 0.63 and 0.68 on seeds 0, 1 with five (five updates on the first batch
                # already reach up to 0.62; the held-fixed clouds above show what it reaches when keys cannot move)
                assert max(diagnostic) > 0.55, (seed, lam, max(diagnostic))
            elif variant in ("ct", "ct-heads", "combine"):  # the critic raises the transport cost it is given
                assert max(diagnostic) > diagnostic[0] + 0.2, (seed, lam)
    worst = {key: round(value, 3) for key, value in ratios.items() if not value <= BOUNDS[variant]}
    assert not worst, (variant, worst, {key: round(value, 3) for key, value in ratios.items()})


def test_lambda_grid_one_baseline_one_twin_per_lambda(tiny, tmp_path):
    fast = dict(max_steps=3, batch_size=8, lr=1e-3, warmup_ratio=0.0, progress=False, variant="mmd")
    out = tmp_path / "grid"
    result = align_pair(tiny["model"], tiny["train"], out, lam=[0.0, 0.5], **fast)
    run = result.runs[0]
    assert [p.name for p in run.twins.values()] == ["aligned-lam0", "aligned-lam0.5"]
    assert run.trained == ["baseline", "aligned-lam0", "aligned-lam0.5"]
    base = load_file(str(run.baseline / "model.safetensors"))
    zero = load_file(str(run.twins[0.0] / "model.safetensors"))
    half = load_file(str(run.twins[0.5] / "model.safetensors"))
    assert all(torch.equal(base[n], zero[n]) for n in base)  # every twin is the baseline's pair
    assert any(not torch.equal(base[n], half[n]) for n in base)
    cards = {lam: json.loads((p / "alignment.json").read_text()) for lam, p in run.twins.items()}
    assert [c["lambda"] for c in cards.values()] == [0.0, 0.5]
    assert all(c["twin"]["lambdas"] == [0.0, 0.5] for c in cards.values())
    # growing the grid reuses the finished baseline and twins
    more = align_pair(tiny["model"], tiny["train"], out, lam=[0.0, 0.5, 2.0], **fast)
    assert more.runs[0].trained == ["aligned-lam2"]


def test_model_map_names_twins_by_lambda(tmp_path):
    from pathlib import Path

    from aligneval.align.train import AlignResult, SeedRun
    from aligneval.demo import model_map

    one = AlignResult(tmp_path, [SeedRun(13, Path("o/baseline"), {0.1: Path("o/aligned-lam0.1"),
                                                                   1.0: Path("o/aligned-lam1")})])
    assert model_map(one) == {"baseline": "o/baseline", "aligned-lam0.1": "o/aligned-lam0.1",
                              "aligned-lam1": "o/aligned-lam1"}
    two = AlignResult(tmp_path, [SeedRun(s, Path(f"o/seed-{s}/baseline"), {0.1: Path(f"o/seed-{s}/aligned")})
                                 for s in (13, 21)])
    assert set(model_map(two)) == {"baseline@13", "aligned@13", "baseline@21", "aligned@21"}
