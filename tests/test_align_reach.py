"""gan's `below` option (aligneval/align/reach.py): above λ = below, the alignment term reaches the
layers below the q/k projections at weight `below` while the projections' own weights take λ.

Reference: the term's gradient is direct (through each projection's weights) plus indirect (through
its input, into the layers below). Computed twice by plain autograd, once with the projections'
inputs detached (direct only) and once without (both), the expected gradient is α·both + (1 − α)·direct."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from aligneval.align.game import build_game
from aligneval.align.variants import build_aligner
from aligneval.errors import UsageError
from tests.tiny import tiny_model
from tests.tiny_families import family_config

AUX = {"aux_lr": 1e-3, "aux_steps": 1}


def _batch(vocab: int = 60):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _term_grads(model, lam: float, below, detach_inputs: bool = False) -> dict:
    """The gradient of λ·term alone after one (seeded) gan step; `detach_inputs` cuts every hooked
    module's input from the layers below, by a pre-hook independent of reach.py."""
    model = copy.deepcopy(model).train()
    batch = _batch()
    game = build_game(model, "gan", lam, {"below": below}, AUX, 13, batch)
    cuts = [m.register_forward_pre_hook(lambda m, args: tuple(a.detach() for a in args)) for m in game.capture.modules] \
        if detach_inputs else []
    torch.manual_seed(0)
    model(**batch)
    game.alignment_term(batch["attention_mask"]).backward()
    for cut in cuts:
        cut.remove()
    game.capture.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _model(family: str):
    if family == "bert":
        return tiny_model(seed=0)
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(family_config(family, 100))


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "phi3"])  # nn.Linear q/k, fused Conv1D, fused Linear
def test_below_scales_only_the_gradient_into_the_layers_below(family):
    model = _model(family)
    lam, below = 1.0, 0.1
    alpha = below / lam
    both = _term_grads(model, lam, "off")
    direct = _term_grads(model, lam, "off", detach_inputs=True)
    scaled = _term_grads(model, lam, below)
    assert set(scaled) == set(both)
    below_layers = [n for n in both if not torch.allclose(both[n], direct.get(n, torch.zeros_like(both[n])))]
    assert below_layers  # the layers below do get something from the term, so the check has teeth
    for name, full in both.items():
        expected = alpha * full + (1 - alpha) * direct.get(name, torch.zeros_like(full))
        assert torch.allclose(scaled[name], expected, rtol=1e-4, atol=1e-7), name


def test_at_or_below_the_cap_the_objective_is_the_papers():
    """λ ≤ below: nothing is attached and the gradient is bit-identical to below=off."""
    model = _model("bert")
    for lam in (0.05, 0.1):
        assert all(torch.equal(a, b) for a, b in zip(_term_grads(model, lam, 0.1).values(),
                                                      _term_grads(model, lam, "off").values()))


def test_the_forward_pass_is_unchanged():
    model = _model("bert").train()
    batch = _batch()
    torch.manual_seed(0)
    plain = model(**batch).logits
    game = build_game(model, "gan", 3.0, {}, AUX, 13, batch)
    assert game.capture.reach is not None  # the default cap (0.1) applies at λ = 3
    torch.manual_seed(0)
    assert torch.equal(model(**batch).logits, plain)
    game.capture.remove()


def test_projections_it_cannot_reach_are_named_once():
    """Qwen3 takes q and k from per-head norms, whose input is the projection's output."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(family_config("qwen3", 100)).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        game = build_game(model, "gan", 1.0, {}, AUX, 13, _batch())
    game.capture.remove()
    messages = [str(w.message) for w in caught if "below=0.1 reaches" in str(w.message)]
    assert len(messages) == 1 and "Qwen3RMSNorm" in messages[0]


@pytest.mark.parametrize("value", [-0.1, "all", True, float("nan")])
def test_bad_below_values_are_refused(value):
    with pytest.raises(UsageError, match="below must be"):
        build_aligner("gan", 1, 4, below=value)
