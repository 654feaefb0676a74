"""`aligneval push MODEL_FOLDER --repo-id ORG/NAME`: upload a model folder (weights, tokenizer, README.md
card, alignment.json) to the Hugging Face Hub with huggingface_hub. Online only: offline mode, no
token or an unreachable Hub is one line and exit 5."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from aligneval.errors import ArtifactError, ResourceError

IGNORE = ("*.tmp", ".*")  # half-written files and hidden files never leave the machine


def push_folder(folder: Path, repo_id: str, *, private: bool = False, revision: Optional[str] = None,
                message: str = "Upload with aligneval push") -> str:
    """Create the repo when needed and upload `folder`; returns the commit URL."""
    import huggingface_hub
    from huggingface_hub import constants

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


def register(app: typer.Typer) -> None:
    @app.command("push")
    def push_command(
        folder: Path = typer.Argument(..., help="The model folder to upload (its README.md is the card)."),
        repo_id: str = typer.Option(..., "--repo-id", help="The Hub repository, ORG/NAME (created if missing)."),
        private: bool = typer.Option(False, "--private", help="Create the repository as private."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Branch to push to (default main)."),
        message: str = typer.Option("Upload with aligneval push", "--message", help="Commit message."),
    ) -> int:
        """Upload a model folder to the Hugging Face Hub (write the card first: `aligneval card`)."""
        url = push_folder(folder, repo_id, private=private, revision=revision, message=message)
        typer.echo(f"pushed {folder} to {url}")
        return 0
