"""A tiny SWAG-format fixture (and the same task in HellaSwag's layout) for multiple-choice tests.

Each row is a context and four endings; the gold ending is the one that carries a positive word
(the others carry negative ones), so a tiny BERT learns it in a few dozen steps. The words come
from tests/tiny.py's fixed vocabulary, so every token is known.

    write_swag(tmp, n=48)             # sent1, sent2, ending0..ending3, label (int), as SWAG
    write_hellaswag(tmp, n=24)        # ind, ctx_a, ctx_b, endings (list), label ("0".."3" as text)
    write_swag(tmp, n=40, noise=0.2)  # a fifth of the labels point at a wrong ending
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.tiny import FILLER, NEGATIVE, POSITIVE

N_CHOICES = 4


def rows(n: int, seed: int = 0, noise: float = 0.0) -> list[dict]:
    """n examples: context, prefix, four endings, the index of the positive ending as label, except
    in a `noise` fraction of rows whose label points at another ending (so no model is sure)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gold = rng.randrange(N_CHOICES)
        endings = []
        for j in range(N_CHOICES):
            word = rng.choice(POSITIVE if j == gold else NEGATIVE)
            words = rng.sample(FILLER, rng.randint(1, 3)) + [word]
            rng.shuffle(words)
            endings.append(" ".join(words))
        label = (gold + 1 + rng.randrange(N_CHOICES - 1)) % N_CHOICES if rng.random() < noise else gold
        out.append({"context": " ".join(rng.sample(FILLER, rng.randint(3, 6))),
                    "prefix": " ".join(rng.sample(FILLER, rng.randint(0, 2))), "endings": endings, "label": label})
    return out


def write_swag(tmp_path, n: int = 48, seed: int = 0, name: str | None = None, noise: float = 0.0) -> Path:
    """SWAG's own columns (jsonl): sent1, sent2, ending0..ending3, label (int), plus video-id."""
    path = Path(tmp_path) / f"{name or f'swag-{seed}-{n}'}.jsonl"
    with open(path, "w") as fh:
        for i, r in enumerate(rows(n, seed, noise)):
            record = {"video-id": f"v{i}", "sent1": r["context"], "sent2": r["prefix"],
                      **{f"ending{j}": e for j, e in enumerate(r["endings"])}, "label": r["label"]}
            fh.write(json.dumps(record) + "\n")
    return path


def write_hellaswag(tmp_path, n: int = 24, seed: int = 7, name: str | None = None, noise: float = 0.0) -> Path:
    """HellaSwag's columns (jsonl): ind, ctx_a, ctx_b (empty for some rows, as WikiHow's are),
    endings (a list), label as a string."""
    path = Path(tmp_path) / f"{name or f'hellaswag-{seed}-{n}'}.jsonl"
    with open(path, "w") as fh:
        for i, r in enumerate(rows(n, seed, noise)):
            record = {"ind": 1000 + i, "ctx_a": r["context"], "ctx_b": r["prefix"] if i % 2 else "",
                      "endings": r["endings"], "label": str(r["label"])}
            fh.write(json.dumps(record) + "\n")
    return path
