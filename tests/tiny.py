"""Shared test helpers: tiny random encoders with a real WordPiece tokenizer, and small data fixtures.

    from tests.tiny import make_tiny_model, write_fixture
    folder = make_tiny_model(tmp_path)                   # tiny BERT, 2 labels, safetensors + tokenizer
    train = write_fixture(tmp_path, n=64, fmt="jsonl")   # text,label rows (learnable sentiment words)

Everything is built from `*Config` classes and the `tokenizers` library: no download, ~1 s.
Building a model sets torch to one thread: tiny models gain nothing from more, and on a shared
2-core machine extra threads make every small op wait for a descheduled peer.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["great", "good", "wonderful", "lovely", "excellent", "fun", "moving", "brilliant"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "weak", "tedious", "poor"]
FILLER = ["the", "movie", "film", "plot", "acting", "was", "really", "quite", "and", "story", "cast", "very"]

# Small sizes shared by every architecture: hidden 32, 2 layers, 4 heads (d_h = 8).
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=80)
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "albert", "distilbert", "deberta-v2", "mpnet")


def sentences(n: int = 300, seed: int = 0) -> list[tuple[str, int]]:
    """(text, label) pairs: label 1 when the sentence carries a positive word, else 0."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, rng.randint(3, 8)) + [rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def tiny_config(model_type: str = "bert", num_labels: int = 2, vocab_size: int = 200, **overrides):
    """A tiny random config of `model_type` (one of MODEL_TYPES)."""
    from transformers import AutoConfig

    kw = dict(TINY, vocab_size=vocab_size, num_labels=num_labels, pad_token_id=0)
    if model_type == "distilbert":
        kw = dict(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                  max_position_embeddings=80, num_labels=num_labels, pad_token_id=0)
    elif model_type == "albert":
        kw.update(embedding_size=16)
    elif model_type == "electra":
        kw.update(embedding_size=32)
    elif model_type in ("roberta", "xlm-roberta", "mpnet"):
        kw.update(max_position_embeddings=84, bos_token_id=2, eos_token_id=3)
    kw.update(overrides)
    return AutoConfig.for_model(model_type, **kw)


def tiny_vocab() -> list[str]:
    """A fixed WordPiece vocabulary: the special tokens, every fixture word whole, and single
    characters (word-initial and ## continuations) for any other word. Fixed, not trained: the
    WordPiece trainer breaks ties in a per-process hash order, so a trained vocabulary (and every
    tiny model built on it) differed from one test process to the next."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(POSITIVE + NEGATIVE + FILLER))
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punctuation = list(".,!?;:'\"()-")
    return special + words + chars + punctuation + [f"##{c}" for c in chars]


def make_tokenizer(folder: Path):
    """A BERT WordPiece fast tokenizer over `tiny_vocab()` (the same ids in every process), saved
    into `folder`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(tiny_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, model_max_length=64)
    fast.save_pretrained(folder)
    return fast


def make_tiny_model(tmp_path, model_type: str = "bert", num_labels: int = 2, seed: int = 0, **overrides) -> Path:
    """Save a tiny random `model_type` sequence classifier + tokenizer; return the folder."""
    import torch
    from transformers import AutoModelForSequenceClassification

    _one_thread()
    folder = Path(tmp_path) / f"tiny-{model_type}"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(folder)
    config = tiny_config(model_type, num_labels, vocab_size=len(tokenizer), **overrides)
    if getattr(config, "type_vocab_size", 2) < 2:  # RoBERTa-style: no segment ids
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
        tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_pair(root) -> dict[str, Path]:
    """Two different tiny random models saved under `root`: {"baseline": folder, "aligned": folder}."""
    root = Path(root)
    return {"baseline": make_tiny_model(root / "a", seed=0), "aligned": make_tiny_model(root / "b", seed=1)}


def tiny_model(model_type: str = "bert", num_labels: int = 2, seed: int = 0, **overrides):
    """An in-memory tiny random model (no tokenizer), for hook and loss tests."""
    import torch
    from transformers import AutoModelForSequenceClassification

    _one_thread()
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type, num_labels, **overrides))


def write_fixture(tmp_path, n: int = 64, fmt: str = "jsonl", *, name: str | None = None, seed: int = 0,
                  string_labels: bool = False, columns: tuple[str, str] = ("text", "label")) -> Path:
    """Write n learnable sentiment rows as jsonl/csv/parquet; return the path."""
    rows = sentences(n, seed)
    text_col, label_col = columns
    records = [{"id": f"ex{i}", text_col: t, label_col: (["neg", "pos"][y] if string_labels else y)}
               for i, (t, y) in enumerate(rows)]
    path = Path(tmp_path) / f"{name or f'data-{seed}-{n}'}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt in ("csv", "parquet"):
        import pandas as pd

        frame = pd.DataFrame(records)
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"unknown fixture format {fmt}")
    return path
