"""The results document: written atomically, read back as a typed `Results`.

`runs/<run>/results.json` holds schema_version, environment, spec, seed, models, data, records,
curves and examples (docs/results.md; JSON Schema in aligneval/schema/results.schema.json). Records
are the unit every later stage reads, so nothing downstream special-cases a metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

# the types and the JSON/parquet I/O live in the bottom layer; read_json and write_json_atomic are
# re-exported for callers of results.*
from aligneval.artifacts import (ModelInfo, Predictions, SplitInfo, read_json, read_predictions,  # noqa: F401
                                 write_json_atomic)
from aligneval.errors import ArtifactError
from aligneval.paths import inside
from aligneval.records import Curve, Record

SCHEMA_VERSION = "1.0"
RESULTS_FILE = "results.json"


@lru_cache(maxsize=1)
def results_schema() -> dict[str, Any]:
    import importlib.resources

    return json.loads(importlib.resources.files("aligneval").joinpath("schema/results.schema.json").read_text("utf-8"))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every JSON Schema violation as 'path: message' (empty when the document is valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(results_schema())
    return [f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become null (the schema says null = undefined)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _clean(value.item())
    return value


def write_results(run_dir: str | Path, doc: dict[str, Any], validate: bool = True) -> Path:
    doc = _clean(doc)
    if validate:
        errors = schema_errors(doc)
        if errors:  # a bug in aligneval, not in the user's input: refuse to write a bad document
            raise ValueError(f"results document does not match its schema: {errors[0]}")
    return write_json_atomic(Path(run_dir) / RESULTS_FILE, doc)


def dumps_records(records: Iterable[Record]) -> str:
    """Canonical text of records (for byte-identity checks and hashing)."""
    return json.dumps(_clean([r.to_dict() for r in records]), sort_keys=True, ensure_ascii=False)


@dataclass
class Results:
    """A loaded results document. `.predictions(model, split)` reads the per-example parquet."""

    doc: dict[str, Any]
    run_dir: Path

    @property
    def path(self) -> Path:
        return self.run_dir / RESULTS_FILE

    @property
    def records(self) -> list[Record]:
        return [Record.from_dict(r) for r in self.doc["records"]]

    @property
    def curves(self) -> list[Curve]:
        return [Curve(**c) for c in self.doc["curves"]]

    @property
    def examples(self) -> list[dict[str, Any]]:
        return list(self.doc.get("examples", []))

    @property
    def models(self) -> dict[str, ModelInfo]:
        return {name: ModelInfo(name=name, path=m["path"], weights_sha256=m.get("weights_sha256"), card=m.get("card"))
                for name, m in self.doc["models"].items()}

    @property
    def splits(self) -> dict[str, SplitInfo]:
        return {name: SplitInfo(name=name, role=d["role"], source=d["source"], fingerprint=d["fingerprint"],
                                size=d["size"]) for name, d in self.doc["data"].items()}

    @property
    def spec_name(self) -> str:
        return self.doc["spec"]["name"]

    def predictions_path(self, model: str, split: str) -> Path:
        """The parquet of (model, split); names from a results.json are untrusted: never outside the run."""
        return inside(self.run_dir / "predictions", model, f"{split}.parquet", what=f"{self.path}: predictions file")

    def predictions(self, model: str, split: str) -> Predictions:
        """Read and check against this document: a file with other rows or other data (truncated,
        replaced) is a corrupt artifact naming the file, not a pairing problem found later."""
        if model not in self.doc["models"]:
            raise ArtifactError(f"{self.path}: no model '{model}' (models: {', '.join(self.doc['models'])})")
        file = self.predictions_path(model, split)
        preds, meta = read_predictions(file)
        info = (self.doc.get("data") or {}).get(split) or {}
        size, fingerprint = info.get("size"), info.get("fingerprint")
        if isinstance(size, int) and preds.n != size:
            raise ArtifactError(f"{file}: corrupt or truncated predictions: {preds.n} rows, but {self.path} "
                                f"records {size} examples for split '{split}'; re-run `aligneval run`")
        stored = meta.get("data_fingerprint") if isinstance(meta, dict) else None
        if fingerprint and stored and stored != fingerprint:
            raise ArtifactError(f"{file}: predictions of other data (fingerprint {str(stored)[:12]}, "
                                f"{self.path} records {str(fingerprint)[:12]}); re-run `aligneval run`")
        return preds

    def get(self, metric: str, split: str, model: str, suite: str | None = None) -> Record:
        """The one record for (metric, split, model[, suite]); KeyError when absent or ambiguous."""
        found = [r for r in self.records if r.metric == metric and r.split == split and r.model == model
                 and (suite is None or r.suite == suite)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} records for {(suite, split, model, metric)}")
        return found[0]

    def value(self, metric: str, split: str, model: str, suite: str | None = None) -> float | None:
        return self.get(metric, split, model, suite).value


def load_results(path: str | Path, validate: bool = True) -> Results:
    """Read `runs/<run>` or `runs/<run>/results.json`; missing, corrupt or invalid -> ArtifactError."""
    path = Path(path).expanduser()
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise ArtifactError(f"results not found: {file} (run `aligneval run` first)")
    doc = read_json(file, "results document")
    if not isinstance(doc, dict):
        raise ArtifactError(f"{file}: corrupt results document (not a JSON object)")
    version = str(doc.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ArtifactError(f"{file}: schema_version '{version}' is not readable by this aligneval "
                            f"(reads {SCHEMA_VERSION.split('.')[0]}.x)")
    if validate:
        errors = schema_errors(doc)
        if errors:
            raise ArtifactError(f"{file}: invalid results document: {errors[0]}")
    return Results(doc=doc, run_dir=file.parent)
