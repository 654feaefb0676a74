"""Uploads to the Hugging Face Hub: a model folder (weights, tokenizer, README.md card, alignment.json)
with huggingface_hub. Online only: offline mode, no token or an unreachable Hub is a ResourceError
(one line, exit 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import huggingface_hub
from huggingface_hub import constants

from aligneval.errors import ArtifactError, ResourceError

IGNORE = ("*.tmp", ".*")  # half-written files and hidden files never leave the machine


def push_folder(folder: Path, repo_id: str, *, private: bool = False, revision: Optional[str] = None,
                message: str = "Upload with aligneval push") -> str:
    """Create the repo when needed and upload `folder`; returns the commit URL."""
    if not folder.is_dir():
        raise ArtifactError(f"model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder}: not a model folder (no config.json)")
    if constants.HF_HUB_OFFLINE:
        raise ResourceError("cannot push: the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE=1)")
    token = huggingface_hub.get_token()
    if not token:
        raise ResourceError("cannot push: no Hugging Face token (run `hf auth login` or set HF_TOKEN)")
    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                 commit_message=message, ignore_patterns=list(IGNORE))
    except Exception as exc:
        if not is_network_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ResourceError(f"cannot push to {repo_id}: {type(exc).__name__}: {first}") from None
    return str(getattr(info, "commit_url", info))


NETWORK_PACKAGES = ("huggingface_hub", "requests", "urllib3", "httpx", "httpx2", "httpcore", "ssl", "socket")


def is_network_error(exc: BaseException) -> bool:
    """An error of the Hub client or its HTTP stack (requests before huggingface_hub 1.0, httpx after,
    whichever fork): the Hub is unreachable or refused, not a bug here."""
    roots = {c.__module__.split(".", 1)[0] for c in type(exc).__mro__}
    return isinstance(exc, (OSError, ConnectionError)) or bool(roots & set(NETWORK_PACKAGES))
