"""Reading the runs a comparison is computed from: results, model names, splits, the declared primary
metrics and the fingerprints that decide whether a stored comparison is still fresh."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any

from aligneval.results import load_results


def load(run_or_results: Any):
    """A `Results` object from a run folder, a results.json path or an already loaded Results."""
    if hasattr(run_or_results, "records") and hasattr(run_or_results, "predictions"):
        return run_or_results
    return load_results(run_or_results)


def run_label(results) -> str:
    return str(getattr(results, "run_dir", "") or "run")


def split_info(results, split: str) -> dict:
    data = getattr(results, "doc", {}).get("data", {}) or {}
    info = data.get(split) or {}
    return info if isinstance(info, dict) else getattr(info, "__dict__", {})


def split_role(results, split: str) -> str:
    return split_info(results, split).get("role", "test")


def models_of(results) -> list[str]:
    names = list(getattr(results, "models", {}) or {})
    for r in results.records:
        if r.model not in names:
            names.append(r.model)
    return names


def declared_primary(results) -> list[str] | None:
    """The spec's `primary` metrics: recorded in results.json's `spec`, or read from the spec file when
    that file is still the one the run used (same sha256)."""
    spec = (getattr(results, "doc", {}) or {}).get("spec") or {}
    if "primary" in spec:
        return list(spec["primary"] or []) or None
    path, sha = spec.get("path"), spec.get("sha256")
    if not path or not sha:
        return None
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(raw).hexdigest() != sha:
        return None
    try:
        value = tomllib.loads(raw.decode("utf-8")).get("primary")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return [str(v) for v in value] if isinstance(value, list) and value else None


def input_fingerprints(cand_res, base_res=None) -> dict[str, Any]:
    """sha256, size and mtime of the results.json files a comparison was computed from."""
    out = {"results": _file_fingerprint(cand_res)}
    if base_res is not None:
        out["against"] = _file_fingerprint(base_res)
    return out


def _file_fingerprint(results) -> dict[str, Any] | None:
    run_dir = getattr(results, "run_dir", None)
    if run_dir is None:
        return None
    path = Path(run_dir) / "results.json"
    try:
        data = path.read_bytes()
        stat = path.stat()
    except OSError:
        return None
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "mtime": stat.st_mtime}

