"""Installed package versions, read from package metadata without importing the packages: what
results, caches and model cards record, so a number can be traced to the code that computed it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aligneval.errors import ArtifactError


def package_versions(names) -> dict[str, str | None]:
    """{name: version, or None when the package is not installed}, in the order given."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")  # what sets a CPU's speed for this work


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """{"model", "family", "model_number", "vector"} of this machine's CPU (Linux; None elsewhere),
    where "vector" lists the VECTOR_FLAGS it has. Benchmarks record it: the same 2-core VM kind can
    land on CPUs of different generations (with and without AVX-512), and a benchmark's seconds
    differ more between those than between two versions of the code."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return {"model": None, "family": None, "model_number": None, "vector": None}
    first: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in first:
            first[key.strip()] = value.strip()
    flags = set(first.get("flags", "").split())
    return {"model": first.get("model name"), "family": first.get("cpu family"),
            "model_number": first.get("model"), "vector": [f for f in VECTOR_FLAGS if f in flags]}


def cpu_line(cpu: dict[str, Any]) -> str:
    """`cpu_description` on one line, as `aligneval env` and the benchmarks print it."""
    if not cpu.get("model"):
        return "unknown"
    vector = ", ".join(cpu["vector"] or []) or "no AVX2"
    return f"{cpu['model']} (family {cpu['family']}, model {cpu['model_number']}; {vector})"


def newer_tokenizer_message(folder) -> str | None:
    """One line when `folder`'s tokenizer names a class the installed transformers lacks because a
    newer transformers saved it (transformers 5 writes "TokenizersBackend", unknown to 4.x); else None.

    Only such a folder gets a message, and AutoTokenizer cannot load it anyway: no false alarm."""
    import json
    from pathlib import Path

    folder = Path(folder)
    try:
        tok_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cls = tok_config.get("tokenizer_class") if isinstance(tok_config, dict) else None
    if not isinstance(cls, str) or not cls or "auto_map" in tok_config:
        return None  # no class named, or remote code (trust_remote_code decides)
    import transformers

    if hasattr(transformers, cls) or hasattr(transformers, cls.removesuffix("Fast")):
        return None
    here = transformers.__version__
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("transformers_version")
    except (OSError, ValueError, AttributeError):
        saved = None
    if saved and _major(saved) > _major(here):
        by = f"transformers {saved}"
    elif cls == "TokenizersBackend":  # transformers 5's generic fast tokenizer
        by = "transformers 5 or newer"
    else:
        return None
    return (f"cannot load the tokenizer in {folder}: it was saved by {by} (tokenizer class {cls}), which "
            f"transformers {here} here does not know; upgrade: pip install \"transformers>={_major_of(saved)}\" "
            "(or bash scripts/install.sh, the current dependency set)")


def check_tokenizer_not_newer(folder) -> None:
    """Raise ArtifactError (exit 3) with `newer_tokenizer_message` when it applies."""
    message = newer_tokenizer_message(folder)
    if message:
        raise ArtifactError(message)


def _major(text: str) -> int:
    try:
        return int(str(text).split(".")[0])
    except ValueError:
        return 0


def _major_of(saved: str | None) -> str:
    return f"{_major(saved)}" if saved and _major(saved) else "5"
