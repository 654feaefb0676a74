"""Tiny random models of today's architectures, built by transformers itself, with the shared tiny
WordPiece tokenizer (tests/tiny.py), except qwen2, which gets a byte-level BPE of Qwen2's own shape.

    from tests.tiny_families import FAMILIES, make_family_model
    folder = make_family_model(tmp_path, "llama")   # 2 layers, 4 query heads, 2 key/value heads

transformers 5 loads every qwen2 folder's tokenizer as `Qwen2Tokenizer`, whatever its
tokenizer_config says (qwen2 is in its MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS), and rebuilds it from
the vocabulary and merges with Qwen2's pre-tokenizer: a WordPiece vocabulary then splits every word into
characters, so the same fixture fed different token sequences to the two dependency sets. A BPE with
Qwen2's normalizer, split regex and byte-level steps tokenizes identically under 4.57 and 5.x.

Sliding windows are made small (4 tokens) so that the sliding-window layers of ModernBERT, Mistral
and Gemma 2/3 really differ from global ones on the fixture sentences (5–11 tokens).
"""

from __future__ import annotations

from pathlib import Path

from tests.tiny import _one_thread, make_tokenizer, sentences, tiny_vocab

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


QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")  # Qwen2's pre-tokenizer split (its tokenizer's own regex)
QWEN2_END = "<|endoftext|>"  # Qwen2's eos, pad and unk in one


def make_qwen2_tokenizer(folder: Path):
    """A byte-level BPE shaped like Qwen2's (NFC, Qwen2's split, byte level, no special tokens added to
    the text; eos = pad = <|endoftext|>, id 0), trained on the tiny vocabulary and fixture sentences."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    words = [w for w in tiny_vocab() if not w.startswith(("[", "##"))]
    corpus = [" ".join(words)] * 2 + [text for text, _ in sentences(300, seed=0)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=[QWEN2_END], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=QWEN2_END, pad_token=QWEN2_END,
                                   unk_token=QWEN2_END, model_input_names=["input_ids", "attention_mask"],
                                   model_max_length=64)
    fast.save_pretrained(folder)
    return fast


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
    if model_type == "qwen2" and pad:
        tokenizer = make_qwen2_tokenizer(folder)
        overrides = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "bos_token_id": None, **overrides}
    else:
        tokenizer = make_family_tokenizer(folder, pad)
    if not pad:
        overrides = {"pad_token_id": None, **overrides}
    config = family_config(model_type, len(tokenizer), num_labels, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
