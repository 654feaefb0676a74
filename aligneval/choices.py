"""Multiple choice: a context scored against several endings (SWAG, HellaSwag), read, encoded and predicted.

Each example is `C` sequence pairs (context, prefix + ending_j), as transformers' multiple-choice
heads expect: the model reads a [batch, C, length] batch and gives one logit per choice, and the
softmax over the choices is the example's probability vector. Stored predictions are therefore
[n, C] probabilities with the gold choice's index as label, exactly the shape of a C-class
classifier's, so every suite that is a function of stored probabilities (accuracy, calibration,
ood, uncertainty) scores multiple choice unchanged.

Columns (defaults are SWAG's, aligneval.tasks): `text_column` the context (sent1), `text_pair_column`
an optional prefix that starts every ending (sent2; may be empty, as HellaSwag's ctx_b often is),
`choice_columns` one column per ending (ending0..ending3) or one column holding a list of endings
(HellaSwag's `endings`), `label_column` the gold ending's index (an integer, or its digits as text).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from aligneval.data import DataSource, Examples, _is_text, _read_columns, kept_rows
from aligneval.errors import DataError, UsageError
from aligneval.registry import did_you_mean


@dataclass
class ChoiceExamples(Examples):
    """`texts[i]` is the context; `choices[i]` its C second segments (prefix + ending), all rows
    with the same C; `labels[i]` the gold choice's index; `label_names` are "0".."C-1"."""

    choices: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.fingerprint:
            self.fingerprint = choice_fingerprint(self.ids, self.texts, self.choices, self.labels)

    @property
    def num_choices(self) -> int:
        return len(self.choices[0]) if self.choices else 0

    def subset(self, indices: Sequence[int]) -> "ChoiceExamples":
        idx = list(indices)
        return ChoiceExamples(ids=[self.ids[i] for i in idx], texts=[self.texts[i] for i in idx],
                              labels=self.labels[idx], label_names=list(self.label_names), source=self.source,
                              skipped=self.skipped, choices=[list(self.choices[i]) for i in idx])

    def text_sha256(self) -> list[str]:
        return [hashlib.sha256("\x1f".join([t, *c]).encode("utf-8")).hexdigest()
                for t, c in zip(self.texts, self.choices)]


def is_choices(examples: Any) -> bool:
    return isinstance(examples, ChoiceExamples)


def choice_fingerprint(ids, texts, choices, labels) -> str:
    """sha256 of the canonical content, the choices included (same rows in the same order, same print)."""
    h = hashlib.sha256(b"multiple-choice\0")
    for i, t, c, y in zip(ids, texts, choices, np.asarray(labels).tolist()):
        h.update(json.dumps([i, t, c, y], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


# ---------- reading ------------------------------------------------------------------------------

def load_choices(source: DataSource) -> ChoiceExamples:
    """Read a multiple-choice split. Label names are the choice indices, whatever a model calls its labels."""
    columns = _read_columns(source)
    where = source.describe()
    if not columns or not len(next(iter(columns.values()))):
        raise DataError(f"{where}: the split is empty (no rows{'' if columns else ', no columns'})")
    wanted = [source.text_column, source.label_column, *source.choice_columns]
    wanted += [c for c in (source.text_pair_column, source.id_column) if c]
    for col in wanted:
        if col not in columns:
            known = sorted(columns)
            raise DataError(f"{where}: no column '{col}'{did_you_mean(col, known)}; columns are: {', '.join(known)}")
    n = len(columns[source.text_column])
    contexts = list(columns[source.text_column])
    prefixes = list(columns[source.text_pair_column]) if source.text_pair_column else [""] * n
    endings = _endings(columns, source.choice_columns, n, where)
    ids = [str(v) for v in columns[source.id_column]] if source.id_column else [str(i) for i in range(n)]
    raw_labels = list(columns[source.label_column])

    keep = [i for i in range(n) if _is_text(contexts[i]) and all(_is_text(e) for e in endings[i])
            and (prefixes[i] is None or isinstance(prefixes[i], str))]
    keep, bad = kept_rows(source, keep, n, ids, raw_labels, where, "row(s) with a null or empty context or ending",
                     "every row has a null or empty context or ending")
    width = {len(endings[i]) for i in keep}
    if len(width) != 1 or min(width) < 2:
        raise DataError(f"{where}: rows have {sorted(width)} endings; multiple choice needs the same number "
                        "(at least 2) in every row")
    n_choices = width.pop()
    labels = choice_labels([raw_labels[i] for i in keep], n_choices, source.label_map, where)
    examples = ChoiceExamples(
        ids=[ids[i] for i in keep], texts=[str(contexts[i]) for i in keep], labels=labels,
        label_names=[str(j) for j in range(n_choices)], source=where, skipped=bad,
        choices=[[_join(prefixes[i], e) for e in endings[i]] for i in keep],
    )
    if source.sample is not None and source.sample < len(examples):
        rng = np.random.default_rng(source.seed)
        chosen = np.sort(rng.choice(len(examples), size=source.sample, replace=False))
        examples = replace(examples.subset(chosen.tolist()), skipped=bad)
    return examples


def _endings(columns: dict[str, list], names: Sequence[str], n: int, where: str) -> list[list[Any]]:
    """Per row, its endings: one column per ending, or one column holding a list per row."""
    if len(names) == 1:
        rows = columns[names[0]]
        if not all(isinstance(v, (list, tuple, np.ndarray)) for v in rows):
            raise DataError(f"{where}: choice column '{names[0]}' must hold a list of endings per row "
                            "(or name one column per ending)")
        return [list(v) for v in rows]
    return [[columns[c][i] for c in names] for i in range(n)]


def _join(prefix: Any, ending: str) -> str:
    """The second segment: the prefix that starts every ending (SWAG's sent2), a space, the ending."""
    prefix = "" if prefix is None else str(prefix).strip()
    return f"{prefix} {ending.strip()}" if prefix else ending.strip()


def choice_labels(raw: Sequence[Any], n_choices: int, label_map: dict[str, str] | None, where: str) -> np.ndarray:
    """The gold choice's index from an integer or its digits as text (HellaSwag stores "0".."3")."""
    if label_map:
        unmapped = sorted({str(v) for v in raw} - set(label_map))
        if unmapped:
            raise DataError(f"{where}: label(s) {unmapped[:5]} are not in the label map {sorted(label_map)}")
        raw = [label_map[str(v)] for v in raw]
    out = []
    for value in raw:
        index = _index(value)
        if index is None:
            raise DataError(f"{where}: label {value!r} is not a choice index (0..{n_choices - 1})")
        out.append(index)
    labels = np.asarray(out, dtype=np.int64)
    outside = sorted({int(v) for v in labels if v < 0 or v >= n_choices})
    if outside:
        raise DataError(f"{where}: label(s) {outside[:5]} are outside the choice indices 0..{n_choices - 1}; "
                        "drop unlabelled rows with drop_labels (SWAG's test split has -1)")
    return labels


def _index(value: Any) -> int | None:
    """An integer label, an integral float (pandas reads integer columns with nulls as floats) or digits."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else None
    text = str(value).strip() if isinstance(value, str) else ""
    return int(text) if text.lstrip("-").isdigit() else None


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


# ---------- prediction ---------------------------------------------------------------------------

def check_head(model: Any, examples: Any, name: str) -> None:
    """The model's head must match the data's task: one line naming both, before any forward pass."""
    from aligneval.tasks import CLASSIFICATION, MULTIPLE_CHOICE, task_of_config

    head = task_of_config(model.config)
    wanted = MULTIPLE_CHOICE if is_choices(examples) else CLASSIFICATION
    if head != wanted:
        raise UsageError(f"model '{name}' has a {head} head ({', '.join(model.config.architectures or [])}) "
                         f"but the data is {wanted}; give a {wanted} model or set the spec's task")


def predict_choices(model, tokenizer, examples: ChoiceExamples, *, max_length: int = 128, batch_size: int = 32,
                    progress: bool = True, description: str = "predict", rank: int = 0,
                    world_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(rows, probs [len(rows), C]): this rank's batches of the one-process plan (examples sorted by
    their longest choice, as predict.batch_plan does for single texts), softmax over the choices."""
    import torch

    from aligneval import distributed
    from aligneval.predict import batch_plan, softmax_batches

    enc = encode(tokenizer, examples, max_length)
    lengths = np.array([max(row) for row in enc["choice_lengths"]], dtype=np.int64)
    batches = distributed.batch_shard(batch_plan(lengths, batch_size), rank, world_size)
    rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    device = next(model.parameters()).device

    def make_batch(idx):
        arrays = padded(enc["columns"], enc["choice_lengths"], idx.tolist(), pad_id, left)
        return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}

    return rows, softmax_batches(model, batches, examples.num_choices, progress, description, make_batch)


def diagnosis_model(model: Any) -> Any:
    """The model whose forward the q/k diagnostics run on [batch, length] inputs: a multiple-choice
    model's encoder (its head wants [batch, choices, length]), any other model as it is."""
    from aligneval.tasks import MULTIPLE_CHOICE, task_of_config

    return model.base_model if task_of_config(model.config) == MULTIPLE_CHOICE else model
