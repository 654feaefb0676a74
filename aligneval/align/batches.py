"""The training data as the loop consumes it: the data source of a path or object, tokenized once
(unpadded), cut into the seeded length-bucketed batch order, and padded batch by batch."""

from __future__ import annotations

from dataclasses import replace

import torch

from aligneval import choices
from aligneval.choices import is_choices
from aligneval.data import DataSource, Examples
from aligneval.errors import UsageError
from aligneval.padding import padding_card
from aligneval.tasks import data_columns


def data_source(data, data_kwargs: dict, task: str | None = None) -> DataSource:
    if isinstance(data, DataSource):
        given = {k: v for k, v in data_kwargs.items() if v is not None}
        return replace(data, **given) if given else data
    try:  # a path reads the task's default columns (multiple choice: SWAG's) unless told otherwise
        return DataSource(path=str(data), **data_columns(task, data_kwargs))
    except TypeError as exc:
        raise UsageError(f"unknown data option: {exc}") from None


def tokenize(tokenizer, examples: Examples, max_length: int) -> dict:
    """Unpadded ids (and segment ids where the tokenizer emits them), with the padding to apply:
    the tokenizer's pad id and side as `load_pretrained` settled them (aligneval.padding)."""
    if is_choices(examples):  # multiple choice: C pairs per example (aligneval.choices)
        return {**choices.tokenize(tokenizer, examples, max_length), "padding": padding_card(tokenizer)}
    enc = tokenizer(
        examples.texts, examples.text_pairs, truncation=True, max_length=max_length, return_attention_mask=False
    )
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {"columns": {k: enc[k] for k in keys}, "labels": examples.labels.tolist(),
            "lengths": [len(ids) for ids in enc["input_ids"]], "pad_id": pad_id, "padding": padding_card(tokenizer)}


def collate(features: dict, index: list[int]):
    """Dynamic padding to the longest example of the batch, on the side `tokenize` recorded (right
    for every registered architecture); the attention mask marks the real tokens either way."""
    if "choices" in features:  # multiple choice: [B, C, L] (aligneval.choices)
        return choices.collate(features, index)

    length = max(features["lengths"][i] for i in index)
    left = features.get("padding", {}).get("side") == "left"
    batch = {}
    for name, column in features["columns"].items():
        fill = features["pad_id"] if name == "input_ids" else 0
        tensor = torch.full((len(index), length), fill, dtype=torch.long)
        for row, i in enumerate(index):
            values = torch.tensor(column[i], dtype=torch.long)
            if left:
                tensor[row, length - len(values):] = values
            else:
                tensor[row, : len(values)] = values
        batch[name] = tensor
    lengths = torch.tensor([features["lengths"][i] for i in index])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    batch["attention_mask"] = (mask.flip(1) if left else mask).long()
    labels = torch.tensor([features["labels"][i] for i in index], dtype=torch.long)
    return batch, labels


def epoch_batches(lengths: list[int], batch_size: int, generator) -> list[list[int]]:
    """Shuffle, sort by length within buckets of 50 batches (less padding), shuffle the batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    bucket = batch_size * 50
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]

