"""Q/K capture for every supported architecture: shapes, untouched forward pass, and the captured
tensors are the ones attention really uses (checked against the model's own attention weights)."""

from __future__ import annotations

import math

import pytest
import torch

from aligneval.align.hooks import ARCHITECTURES, attach, freeze_bottom, parse_qk_pattern
from aligneval.errors import UsageError
from tests.tiny import MODEL_TYPES, TINY, tiny_model

# Architectures whose attention is exactly softmax(QK^T/sqrt(d_h) + mask): no position bias term.
PLAIN_ATTENTION = {"bert", "roberta", "xlm-roberta", "electra", "albert", "distilbert", "deberta-v2"}


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 150, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    return ids, mask


def test_registry_covers_the_issue_architectures():
    assert set(MODEL_TYPES) <= set(ARCHITECTURES.names())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_capture_shapes_and_forward_unchanged(model_type):
    model = tiny_model(model_type, attn_implementation="eager").eval()
    ids, mask = _batch()
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    with attach(model) as capture, torch.no_grad():
        hooked = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        layers = capture.layers()
    assert torch.equal(plain.logits, hooked.logits)
    heads, d_h = TINY["num_attention_heads"], TINY["hidden_size"] // TINY["num_attention_heads"]
    assert len(layers) == TINY["num_hidden_layers"]
    for q, k in layers:
        assert q.shape == k.shape == (3, heads, 9, d_h)
        assert not torch.equal(q, k)
    if model_type in PLAIN_ATTENTION:
        # Independent check: rebuild each layer's attention probabilities from the captured Q, K.
        for (q, k), probs in zip(layers, hooked.attentions):
            scores = q @ k.transpose(-1, -2) / math.sqrt(d_h)
            scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
            rebuilt = torch.softmax(scores, dim=-1)
            valid = mask.bool()[:, None, :, None].expand_as(probs)  # rows of real query tokens
            assert torch.allclose(rebuilt[valid], probs[valid], atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "albert"])
def test_stacked_equals_stack_of_layers_and_gradients_reach_the_projections(model_type):
    # `stacked()` is what torch.stack of the per-layer views gives (values and gradients), laid out
    # as the projections write it: [N, B, L, H, d_h] in memory. ALBERT: one shared Linear, N calls.
    model = tiny_model(model_type).eval()
    ids, mask = _batch(1)
    weights = torch.randn(TINY["num_hidden_layers"], 3, TINY["num_attention_heads"], 9,
                          TINY["hidden_size"] // TINY["num_attention_heads"], generator=torch.Generator().manual_seed(2))
    grads = []
    with attach(model) as capture:
        for use_stacked in (True, False):
            model.zero_grad()
            model(input_ids=ids, attention_mask=mask)
            if use_stacked:
                k, q = capture.stacked()
                assert k.transpose(2, 3).is_contiguous() and q.transpose(2, 3).is_contiguous()
            else:
                layers = capture.layers()
                k, q = torch.stack([k for _, k in layers]), torch.stack([q for q, _ in layers])
                assert torch.equal(k, stacked_k) and torch.equal(q, stacked_q)
            stacked_k, stacked_q = k.detach(), q.detach()
            capture.clear()
            ((k * weights).sum() + (q * weights.flip(0)).sum()).backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_hooks_are_removed():
    model = tiny_model("bert").eval()
    capture = attach(model)
    capture.remove()
    ids, mask = _batch()
    model(input_ids=ids, attention_mask=mask)
    assert capture.layers() == []


def test_unknown_architecture_names_supported_and_override():
    model = tiny_model("bert")
    model.config.model_type = "fancy-encoder"
    with pytest.raises(UsageError) as err:
        attach(model)
    message = err.value.message
    assert "fancy-encoder" in message and "bert" in message and "--qk-pattern" in message
    assert "\n" not in message
    # The override finds the same modules by name.
    with attach(model, qk_pattern="query,key") as capture:
        ids, mask = _batch()
        model(input_ids=ids, attention_mask=mask)
        assert len(capture.layers()) == TINY["num_hidden_layers"]


def test_bad_override_patterns():
    with pytest.raises(UsageError):
        parse_qk_pattern("query")
    with pytest.raises(UsageError):
        parse_qk_pattern("query,(")
    model = tiny_model("bert")
    with pytest.raises(UsageError, match="found 0 query"):
        attach(model, qk_pattern="nothing_here,key")


def test_freeze_bottom_and_trainable_only_capture():
    model = tiny_model("bert", num_hidden_layers=3)
    freeze_bottom(model, 2)
    layers = model.bert.encoder.layer
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert not any(p.requires_grad for p in layers[1].parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    with attach(model, trainable_only=True) as capture:
        ids, mask = _batch()
        model(input_ids=ids, attention_mask=mask)
        assert len(capture.layers()) == 1
    with pytest.raises(UsageError):
        freeze_bottom(tiny_model("bert"), 2)  # would freeze every layer
    with pytest.raises(UsageError):
        freeze_bottom(tiny_model("albert"), 1)  # shared layers
