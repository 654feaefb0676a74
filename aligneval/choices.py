"""Multiple choice, encoded for a model: each example is `C` sequence pairs (context, prefix + ending_j),
as transformers' multiple-choice heads expect, read as a [batch, C, length] batch that gives one logit per
choice. Reading the splits is `aligneval.data`'s (ChoiceExamples); predicting them is `aligneval.predict`'s.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from aligneval.data import ChoiceExamples, is_choices  # noqa: F401  (is_choices: read with the batching)
from aligneval.tasks import MULTIPLE_CHOICE, task_of_config


# ---------- encoding -----------------------------------------------------------------------------

def encode(tokenizer, examples: ChoiceExamples, max_length: int) -> dict[str, Any]:
    """Every (context, choice) pair tokenized once, unpadded: {name: [n][C] token lists}, lengths [n][C]."""
    c = examples.num_choices
    firsts = [t for t in examples.texts for _ in range(c)]
    seconds = [s for row in examples.choices for s in row]
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length, padding=False)
    names = [k for k in ("input_ids", "token_type_ids") if k in enc]
    columns = {k: [enc[k][i * c:(i + 1) * c] for i in range(len(examples))] for k in names}
    lengths = [[len(ids) for ids in row] for row in columns["input_ids"]]
    return {"columns": columns, "choice_lengths": lengths}


def tokenize(tokenizer, examples: ChoiceExamples, max_length: int) -> dict[str, Any]:
    """Training features in the layout the training loop uses (`lengths` sorts the batches: an
    example's longest choice), plus what `collate` needs to build [B, C, L] batches."""
    enc = encode(tokenizer, examples, max_length)
    return {"columns": enc["columns"], "choice_lengths": enc["choice_lengths"], "choices": examples.num_choices,
            "labels": examples.labels.tolist(), "lengths": [max(row) for row in enc["choice_lengths"]],
            "pad_id": tokenizer.pad_token_id or 0, "left": getattr(tokenizer, "padding_side", "right") == "left"}


def padded(columns: dict[str, list], choice_lengths: list[list[int]], index: Sequence[int], pad_id: int,
           left: bool = False) -> dict[str, np.ndarray]:
    """[B, C, L] arrays (L = the batch's longest choice) and the attention mask, padded on the tokenizer's side."""
    c = len(choice_lengths[index[0]])
    width = max(max(choice_lengths[i]) for i in index)
    out = {}
    for name, column in columns.items():
        arr = np.full((len(index), c, width), pad_id if name == "input_ids" else 0, dtype=np.int64)
        for row, i in enumerate(index):
            for j, seq in enumerate(column[i]):
                if left:
                    arr[row, j, width - len(seq):] = seq
                else:
                    arr[row, j, :len(seq)] = seq
        out[name] = arr
    lengths = np.array([choice_lengths[i] for i in index])[..., None]
    positions = np.arange(width)[None, None, :]
    out["attention_mask"] = (positions >= width - lengths if left else positions < lengths).astype(np.int64)
    return out


def collate(features: dict[str, Any], index: Sequence[int]):
    """(batch of [B, C, L] tensors, gold indices [B]) for the training loop."""
    import torch

    arrays = padded(features["columns"], features["choice_lengths"], list(index), features["pad_id"],
                    features.get("left", False))
    batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return batch, torch.tensor([features["labels"][i] for i in index], dtype=torch.long)


# ---------- the encoder a diagnosis reads ------------------------------------------------------

def diagnosis_model(model: Any) -> Any:
    """The model whose forward the q/k diagnostics run on [batch, length] inputs: a multiple-choice
    model's encoder (its head wants [batch, choices, length]), any other model as it is."""
    return model.base_model if task_of_config(model.config) == MULTIPLE_CHOICE else model
