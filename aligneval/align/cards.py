"""The alignment card every trained folder carries (`alignment.json`) and its training log's name:
what was trained, on which data, with which versions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aligneval.data import Examples
from aligneval.versions import package_versions

CARD_NAME = "alignment.json"
LOG_NAME = "train_log.jsonl"
CARD_FORMAT = "aligneval.alignment/1"
VERSIONED_PACKAGES = ("aligneval", "torch", "transformers", "tokenizers", "numpy", "datasets")


def read_card(folder: Path) -> dict | None:
    try:
        return json.loads((folder / CARD_NAME).read_text())
    except (OSError, ValueError):
        return None


def data_card(examples: Examples) -> dict:
    return {"source": examples.source, "fingerprint": examples.fingerprint, "size": len(examples),
            "skipped": examples.skipped}


def versions() -> dict:
    return {"python": sys.version.split()[0], **package_versions(VERSIONED_PACKAGES)}
