"""Tiny random models of today's architectures, built by transformers itself, with the shared tiny
WordPiece tokenizer (tests/tiny.py).

    from tests.tiny_families import FAMILIES, make_family_model
    folder = make_family_model(tmp_path, "llama")   # 2 layers, 4 query heads, 2 key/value heads

Sliding windows are made small (4 tokens) so that the sliding-window layers of ModernBERT, Mistral
and Gemma 2/3 really differ from global ones on the fixture sentences (5–11 tokens).
"""

from __future__ import annotations

from pathlib import Path

from tests.tiny import _one_thread, make_tokenizer

# in the order the issue lists them (gemma3_text: Gemma 3's text model)
FAMILIES = ("modernbert", "gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "phi3")
NO_GQA = {"modernbert", "gpt2"}  # one key head per query head by design
HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 32, 2
WINDOW = 4
# the tokenizer's special ids ([PAD] 0, [CLS] 2, [SEP] 3): every config names ids inside the vocabulary
SPECIAL = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)


def family_kwargs(model_type: str, vocab_size: int, num_labels: int = 2) -> dict:
    """Small sizes for `AutoConfig.for_model(model_type, **kwargs)`."""
    if model_type == "gpt2":
        return dict(n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=2 * HIDDEN, n_positions=80,
                    vocab_size=vocab_size, num_labels=num_labels, **SPECIAL)
    kw = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=2 * HIDDEN,
              max_position_embeddings=80, vocab_size=vocab_size, num_labels=num_labels, **SPECIAL)
    if model_type == "modernbert":  # layer 0 global, layer 1 local (a 2·WINDOW-token window)
        kw.update(global_attn_every_n_layers=2, local_attention=2 * WINDOW, cls_token_id=2, sep_token_id=3)
    else:
        kw.update(num_key_value_heads=KV_HEADS)
    if model_type in ("qwen3", "gemma2", "gemma3_text"):
        kw.update(head_dim=HIDDEN // HEADS)
    if model_type in ("mistral", "gemma2", "gemma3_text"):
        kw.update(sliding_window=WINDOW)
    if model_type in ("gemma2", "gemma3_text"):
        kw.update(layer_types=["sliding_attention", "full_attention"])
    return kw


def family_config(model_type: str, vocab_size: int, num_labels: int = 2, **overrides):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**family_kwargs(model_type, vocab_size, num_labels), **overrides})


def make_family_tokenizer(folder: Path, pad: bool = True):
    """The tiny WordPiece tokenizer, emitting only what the model takes; `pad=False` saves it as
    GPT-2's own tokenizer comes: no pad token, an eos token ([SEP]) it does not add to the text."""
    from tokenizers import processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    inputs = ["input_ids", "attention_mask"]  # none of these families takes segment ids
    bert = make_tokenizer(folder)
    if pad:
        tokenizer = AutoTokenizer.from_pretrained(folder, eos_token="[SEP]", model_input_names=inputs)
    else:
        backend = bert.backend_tokenizer
        backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            (Path(folder) / name).unlink(missing_ok=True)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="[SEP]", unk_token="[UNK]",
                                            model_input_names=inputs, model_max_length=64)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_family_model(tmp_path, model_type: str, seed: int = 0, num_labels: int = 2, pad: bool = True,
                      **overrides) -> Path:
    """Save a tiny random `model_type` sequence classifier + tokenizer (safetensors); return the folder.
    `pad=False`: neither the tokenizer nor the config names a pad token."""
    import torch
    from transformers import AutoModelForSequenceClassification

    _one_thread()
    folder = Path(tmp_path) / f"tiny-{model_type}{'' if pad else '-nopad'}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_family_tokenizer(folder, pad)
    if not pad:
        overrides = {"pad_token_id": None, **overrides}
    config = family_config(model_type, len(tokenizer), num_labels, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
