"""The bottom layer: the shared artifact types and every file aligneval writes or reads back.

`Predictions`, `SplitInfo`, `ModelInfo` are the types the predict, results and suite stages pass
around; JSON and parquet I/O lives here too, so those stages import this module instead of each
other (no predict <-> results cycle, no results -> suites dependency). Every write is atomic: a
hidden temp file in the same folder, then `os.replace`, so a reader (another process sharing a
cache, a gate reading a report) sees the old file or the new one, never half of one.

Imports only the standard library, numpy and aligneval.errors; pyarrow is imported when a parquet
file is touched.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from aligneval.errors import ArtifactError

META_KEY = b"aligneval"  # parquet schema-metadata key holding aligneval's JSON metadata


# ---------- shared types ---------------------------------------------------------------------

@dataclass
class Predictions:
    """One model on one split: rows aligned with `ids`; `probs` is [n, n_classes]."""

    ids: list[str]
    labels: np.ndarray
    probs: np.ndarray
    texts: list[str] | None = None

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class SplitInfo:
    name: str
    role: str  # "dev" | "test" | "ood"
    source: str
    fingerprint: str
    size: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    weights_sha256: str | None = None
    card: dict[str, Any] | None = None


# ---------- atomic writes --------------------------------------------------------------------

def atomic_write(path: str | Path, writer: Callable[[IO[Any]], Any], *, binary: bool = False,
                 fsync: bool = False) -> Path:
    """Call `writer(fh)` on a temp file next to `path`, then rename it onto `path`.

    Readers only ever open `path`: until the rename the half-written file is a hidden temp file, so
    concurrent readers never see a partial artifact (last complete writer wins). On any error,
    Ctrl-C included, the temp file is removed and the old `path` is untouched. `fsync=True` puts the
    bytes on disk before the name points at them (shared caches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as fh:
            writer(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), binary=True, fsync=fsync)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


# ---------- JSON -----------------------------------------------------------------------------

def read_json(file: str | Path, what: str = "JSON") -> Any:
    """A JSON artifact's content; unreadable or undecodable (bad JSON, not UTF-8) -> ArtifactError
    naming the file."""
    file = Path(file)
    try:
        return json.loads(file.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file}: corrupt {what} ({exc})") from None
    except OSError as exc:  # missing, a folder, no permission
        raise ArtifactError(f"{file}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None


def write_json_atomic(path: str | Path, doc: Any) -> Path:
    """Indented UTF-8 JSON, strict (NaN/inf raise: JSON has none), written atomically."""

    def dump(fh):
        json.dump(doc, fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    return atomic_write(path, dump)


# ---------- JSON lines -----------------------------------------------------------------------
# One object per line, lines ending in "\n" only. `json.dumps(..., ensure_ascii=False)` writes U+0085,
# U+2028 and U+2029 raw, and a text may hold them: `str.splitlines()` (and text-mode files, which also
# split at "\r") would cut such a line in two. Every JSON-lines file aligneval reads goes through here.


def json_lines(data: bytes, *, complete_only: bool = False) -> Iterator[tuple[Any, int]]:
    """(object, end offset) for each line of `data` ending in b"\n" (a blank line gives None). The last
    piece without "\n" is read too, unless `complete_only` (an append-only log cut by a kill). A line
    that is not UTF-8 JSON raises ValueError (json.JSONDecodeError or UnicodeDecodeError)."""
    offset = 0
    while offset < len(data):
        nl = data.find(b"\n", offset)
        if nl < 0 and complete_only:
            return
        end = len(data) if nl < 0 else nl + 1
        raw = data[offset:end].rstrip(b"\n")
        yield (json.loads(raw.decode("utf-8")) if raw.strip() else None), end
        offset = end


def read_json_lines(file: str | Path, what: str = "JSON lines") -> list[Any]:
    """Every object of a JSON-lines file (gzip-compressed when the name ends in .gz), blank lines
    skipped; unreadable or a line that is not JSON -> ArtifactError naming the file and the line."""
    file = Path(file)
    try:
        data = file.read_bytes()
        if file.name.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ArtifactError(f"{file}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    rows: list[Any] = []
    start = 0
    try:
        for obj, start in json_lines(data):
            if obj is not None:
                rows.append(obj)
    except ValueError as exc:
        line = data.count(b"\n", 0, start) + 1
        raise ArtifactError(f"{file} is corrupt (not {what}: line {line}: {type(exc).__name__})") from None
    return rows


# ---------- parquet --------------------------------------------------------------------------

def write_table_atomic(path: str | Path, table, meta: dict[str, Any] | None = None, *, fsync: bool = False) -> Path:
    """A pyarrow table as parquet, atomically, with `meta` as JSON in the schema metadata."""
    import pyarrow.parquet as pq

    if meta is not None:
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
    return atomic_write(path, lambda fh: pq.write_table(table, fh), binary=True, fsync=fsync)


def read_table(path: str | Path, columns: list[str] | None = None):
    """(pyarrow table, aligneval metadata) read through one open file handle; `columns`: only those.

    One open file: given a path, pyarrow may open it again for the data, and a writer renaming a
    new file over it in between would give this file's footer with the other file's rows.
    `ParquetFile.read`, not `pq.read_table`: the latter goes through pyarrow.dataset, whose import
    pulls in pandas, about 0.25 s of the first read in every process (`aligneval report`, `gate`)."""
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        table = pq.ParquetFile(fh).read(columns=columns)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table, meta


def write_float_table(path: str | Path, ids: list[str], columns: dict[str, np.ndarray],
                      meta: dict[str, Any]) -> Path:
    """`id`, then one float64 column per name (per-example suite values), atomically."""
    import pyarrow as pa

    table = pa.table({"id": pa.array(ids, pa.string()),
                      **{name: pa.array(np.asarray(v, np.float64)) for name, v in columns.items()}})
    return write_table_atomic(path, table, meta)


def _list_column(probs: np.ndarray):
    """An [n, k] array as a parquet list<double> column, one list per row, without Python lists."""
    import pyarrow as pa

    n, k = probs.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * k), pa.array(probs.ravel()))


def write_predictions(path: str | Path, preds: Predictions, text_sha256: list[str], meta: dict[str, Any]) -> None:
    """The predictions parquet (id, label, probs, text_sha256, text) with the cache key in the
    schema metadata; atomic and fsynced, because several processes or runs may share a cache."""
    import pyarrow as pa

    probs = np.ascontiguousarray(preds.probs, dtype=np.float64).reshape(preds.n, -1)
    table = pa.table({
        "id": pa.array(preds.ids, pa.string()),
        "label": pa.array(np.asarray(preds.labels, dtype=np.int64)),
        "probs": _list_column(probs),
        "text_sha256": pa.array(text_sha256, pa.string()),
        "text": pa.array(preds.texts or [""] * preds.n, pa.string()),
    })
    write_table_atomic(path, table, meta, fsync=True)


NUMPY_OF_ARROW = {"int32": np.int32, "int64": np.int64, "double": np.float64}


def as_numpy(array) -> np.ndarray:
    """A primitive Arrow array without nulls as a read-only numpy view of its data buffer; anything
    else through np.asarray. pyarrow's own conversion (to_numpy, np.asarray) imports pandas on first
    use, even for a view: about 0.2 s of every `aligneval report` or `gate` process."""
    dtype = NUMPY_OF_ARROW.get(str(array.type))
    if dtype is None or array.null_count:
        return np.asarray(array)
    if not len(array):
        return np.empty(0, dtype)
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * np.dtype(dtype).itemsize)


def read_predictions(path: str | Path) -> tuple[Predictions, dict[str, Any]]:
    """Read a predictions parquet; missing, truncated or corrupt -> ArtifactError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"predictions not found: {path}")
    try:
        table, meta = read_table(path)
        column = table.column("probs").combine_chunks()
        widths = as_numpy(column.value_lengths()) if not column.null_count else None
        values = as_numpy(column.flatten()).astype(np.float64, copy=False)
        texts = table.column("text").to_pylist() if "text" in table.column_names else None
        ids = [str(i) for i in table.column("id").to_pylist()]
        labels = as_numpy(table.column("label").combine_chunks()).astype(np.int64, copy=False)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ArtifactError(f"cannot read predictions {path}: {type(exc).__name__}: {first}") from None
    k = int(widths[0]) if widths is not None and len(widths) else 0
    if widths is None or np.any(widths != k) or len(widths) != len(ids):
        raise ArtifactError(f"corrupt predictions {path}: probs do not form an [n, k] array")
    preds = Predictions(ids=ids, labels=labels, probs=values.reshape(len(ids), k), texts=texts)
    return preds, meta
