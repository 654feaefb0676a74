"""Load labelled text from local files (csv, tsv, jsonl, json, parquet, `save_to_disk` folders) or the hub.

Shared by training (`align`) and evaluation (`run`): one place that turns a source into `Examples`
with stable ids, integer labels, the label names in a stable order and a content fingerprint.

Multiple choice (SWAG, HellaSwag) reads into `ChoiceExamples`: `text_column` the context (sent1),
`text_pair_column` an optional prefix that starts every ending (sent2; may be empty, as HellaSwag's
ctx_b often is), `choice_columns` one column per ending (ending0..ending3) or one column holding a
list of endings (HellaSwag's `endings`), `label_column` the gold ending's index (an integer, or its
digits as text). Stored predictions are then [n, C] probabilities with the gold choice's index as
label, the shape of a C-class classifier's, so every suite over stored probabilities scores them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aligneval.errors import ArtifactError, DataError, ResourceError, UsageError
from aligneval.registry import did_you_mean

LOCAL_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet", ".gz"}
ON_EMPTY_CHOICES = ("reject", "skip")


@dataclass(frozen=True)
class DataSource:
    """Where a split comes from and how to read it."""

    path: str
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    id_column: str | None = None
    label_map: dict[str, str] | None = None  # raw label value (as str) -> label name
    hub_split: str | None = None
    hub_config: str | None = None
    sample: int | None = None
    seed: int = 0
    on_empty: str = "reject"  # null or empty texts: "reject" (error) or "skip" (drop and count)
    drop_labels: tuple[str, ...] = ()  # raw label values (as str) whose rows are dropped, e.g. SNLI's "-1"
    choice_columns: tuple[str, ...] | None = None  # multiple choice: the endings (aligneval.choices)

    def describe(self) -> str:
        return self.path if self.hub_split is None else f"{self.path}[{self.hub_split}]"


@dataclass
class Examples:
    """Labelled texts with stable ids; `labels[i]` indexes `label_names`."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    source: str
    text_pairs: list[str] | None = None
    skipped: int = 0
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.ids, self.texts, self.text_pairs, self.labels, self.label_names)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: Sequence[int]) -> "Examples":
        idx = list(indices)
        return Examples(
            ids=[self.ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            label_names=list(self.label_names),
            source=self.source,
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            skipped=self.skipped,
        )

    def text_sha256(self) -> list[str]:
        pairs = self.text_pairs or [None] * len(self.texts)
        return [text_hash(t, p) for t, p in zip(self.texts, pairs)]


def text_hash(text: str, pair: str | None = None) -> str:
    payload = text if pair is None else f"{text}\x1f{pair}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def fingerprint(ids, texts, pairs, labels, label_names) -> str:
    """sha256 of the canonical content: same examples in the same order give the same fingerprint."""
    h = hashlib.sha256()
    h.update(json.dumps(list(label_names)).encode())
    pairs = pairs or [None] * len(texts)
    for i, t, p, y in zip(ids, texts, pairs, np.asarray(labels).tolist()):
        h.update(json.dumps([i, t, p, y], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def is_local(path: str) -> bool:
    """A path is local if it exists, has a data-file suffix, or is written as a path; else a hub id."""
    if path.startswith("hub:"):
        return False
    p = Path(path).expanduser()
    return p.exists() or p.suffix.lower() in LOCAL_SUFFIXES or path.startswith((".", "/", "~"))


def load_examples(source: DataSource, label_names: Sequence[str] | None = None) -> Examples:
    """Read `source` into `Examples`. `label_names` (e.g. a model's id2label) fixes the label order."""
    if source.on_empty not in ON_EMPTY_CHOICES:
        raise UsageError(f"on_empty must be one of {', '.join(ON_EMPTY_CHOICES)}, not '{source.on_empty}'")
    if source.choice_columns:  # multiple choice: a context and its endings; labels are choice indices
        return load_choices(source)
    columns = _read_columns(source)
    where = source.describe()
    if not columns or not len(next(iter(columns.values()))):
        # a file that parses but holds no rows (0-byte or header-only CSV, empty JSONL) is unusable
        # data (exit 4); a file that does not parse as its format is a corrupt artifact (exit 3)
        raise DataError(f"{where}: the split is empty (no rows{'' if columns else ', no columns'})")
    needed = [source.text_column, source.label_column]
    needed += [c for c in (source.text_pair_column, source.id_column) if c]
    for col in needed:
        if col not in columns:
            known = sorted(columns)
            raise DataError(
                f"{where}: no column '{col}'{did_you_mean(col, known)}; columns are: {', '.join(known)}"
            )
    n = len(columns[source.text_column])
    texts = list(columns[source.text_column])
    pairs = list(columns[source.text_pair_column]) if source.text_pair_column else None
    ids = [str(v) for v in columns[source.id_column]] if source.id_column else [str(i) for i in range(n)]
    raw_labels = list(columns[source.label_column])

    keep = [i for i in range(n) if _is_text(texts[i]) and (pairs is None or _is_text(pairs[i]))]
    keep, bad = kept_rows(source, keep, n, ids, raw_labels, where, "null or empty text(s)", "every text is null or empty")

    label_ids, names = encode_labels([raw_labels[i] for i in keep], label_names, source.label_map, where)
    examples = Examples(
        ids=[ids[i] for i in keep],
        texts=[str(texts[i]) for i in keep],
        labels=label_ids,
        label_names=names,
        source=where,
        text_pairs=None if pairs is None else [str(pairs[i]) for i in keep],
        skipped=bad,
    )
    if source.sample is not None and source.sample < len(examples):
        if source.sample <= 0:
            raise UsageError(f"{where}: sample must be positive, not {source.sample}")
        rng = np.random.default_rng(source.seed)
        chosen = np.sort(rng.choice(len(examples), size=source.sample, replace=False))
        examples = replace(examples.subset(chosen.tolist()), skipped=bad)
    return examples


def kept_rows(source: DataSource, keep: list[int], n: int, ids: list[str], raw_labels: list, where: str,
              empty: str, all_empty: str) -> tuple[list[int], int]:
    """The rows to use: empty rows rejected (or skipped when the spec says so), ids checked unique,
    rows with a dropped label left out; with the number of empty rows skipped. `empty` / `all_empty`
    name what was empty in the errors."""
    bad = n - len(keep)
    if bad and source.on_empty == "reject":
        rows = ", ".join(str(i) for i in sorted(set(range(n)) - set(keep)))[:80]
        raise DataError(f"{where}: {bad} {empty} (rows {rows}); set on_empty = \"skip\" to drop them")
    if not keep:
        raise DataError(f"{where}: {all_empty}")
    _check_unique(ids, where)
    if source.drop_labels:
        drop = {str(v) for v in source.drop_labels}
        keep = [i for i in keep if str(raw_labels[i]) not in drop]
        if not keep:
            raise DataError(f"{where}: every row has a dropped label {sorted(drop)}")
    return keep, bad


def encode_labels(
    raw: Sequence[Any],
    label_names: Sequence[str] | None = None,
    label_map: dict[str, str] | None = None,
    where: str = "data",
) -> tuple[np.ndarray, list[str]]:
    """Map raw labels to ids. Integers stay as they are; strings follow `label_names` or sorted order."""
    if label_map:
        unmapped = sorted({str(v) for v in raw} - set(label_map))
        if unmapped:
            raise DataError(f"{where}: label(s) {unmapped[:5]} are not in the label map {sorted(label_map)}")
        raw = [label_map[str(v)] for v in raw]
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in raw):
        raise DataError(f"{where}: some labels are null")
    if all(_is_int(v) for v in raw):
        ints = np.array([int(v) for v in raw], dtype=np.int64)
        if label_names is None:
            if ints.min() < 0:
                raise DataError(f"{where}: integer labels must be >= 0, found {int(ints.min())}")
            names = [str(i) for i in range(int(ints.max()) + 1)]
        else:
            names = list(label_names)
            outside = sorted({int(v) for v in ints if v < 0 or v >= len(names)})
            if outside:
                raise DataError(
                    f"{where}: label id(s) {outside[:5]} are outside the model's label set {names}"
                )
        return ints, names
    strings = [str(v) for v in raw]
    names = list(label_names) if label_names is not None else sorted(set(strings))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(strings) - set(index))
    if unknown:
        raise DataError(
            f"{where}: data labels {sorted(set(strings))} do not match the model's label set {names}; "
            "give a label map"
        )
    return np.array([index[s] for s in strings], dtype=np.int64), names


def require_classes(examples: Examples, minimum: int = 2) -> None:
    found = len(np.unique(examples.labels))
    if found < minimum:
        raise DataError(f"{examples.source}: the label column has {found} class(es); training needs {minimum}+")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_int(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def _check_unique(ids: list[str], where: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})
        raise DataError(f"{where}: duplicate id(s) {dupes[:5]}")


def _read_columns(source: DataSource) -> dict[str, list]:
    if is_local(source.path):
        return _read_local(Path(source.path.removeprefix("file:")).expanduser(), source)
    return _read_hub(source)


def _read_local(path: Path, source: DataSource) -> dict[str, list]:
    if not path.exists():
        raise ArtifactError(f"data file not found: {path}")
    try:
        if path.is_dir():
            return _read_saved_dataset(path, source)
        frame = _read_frame(path)
    except (ArtifactError, DataError, UsageError):
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise ArtifactError(f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return {str(c): frame[c].tolist() for c in frame.columns}


def _read_frame(path: Path):
    import pandas as pd

    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith(".jsonl"):
        return pd.read_json(path, lines=True, dtype=False)
    if name.endswith(".json"):
        return pd.read_json(path, dtype=False)
    if name.endswith((".csv", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        try:
            return pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[])
        except pd.errors.EmptyDataError:  # 0 bytes or blank lines only: a CSV with no rows, not a corrupt one
            return pd.DataFrame()
    raise UsageError(f"{path}: unknown data format; use .csv, .tsv, .jsonl, .json, .parquet or a saved dataset")


def _read_saved_dataset(path: Path, source: DataSource) -> dict[str, list]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is a folder but not a saved dataset (datasets.save_to_disk)") from None
    if isinstance(loaded, datasets.DatasetDict):
        split = source.hub_split or ("train" if "train" in loaded else None)
        if split not in loaded:
            raise UsageError(f"{path}: name a split with hub_split; it has {', '.join(loaded)}")
        loaded = loaded[split]
    return loaded.to_dict()


def _read_hub(source: DataSource) -> dict[str, list]:
    """Real hub loading for online users; offline it fails with one clear line."""
    import datasets

    name = source.path.removeprefix("hub:")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise ResourceError(f"'{name}' is a hub dataset and the hub is switched off (HF_HUB_OFFLINE=1)")
    try:
        ds = datasets.load_dataset(name, source.hub_config, split=source.hub_split or "train")
    except Exception as exc:  # network errors come in many types
        raise ResourceError(
            f"cannot load hub dataset '{name}' ({type(exc).__name__}); are you online? "
            "Local files work offline."
        ) from None
    return ds.to_dict()


# ---------- multiple choice ----------------------------------------------------------------------

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
