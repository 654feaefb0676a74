"""`aligneval push MODEL_FOLDER --repo-id ORG/NAME`: upload a model folder to the Hugging Face Hub
(aligneval.hub). Online only: offline mode, no token or an unreachable Hub is one line and exit 5."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


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
        from aligneval.hub import push_folder

        url = push_folder(folder, repo_id, private=private, revision=revision, message=message)
        typer.echo(f"pushed {folder} to {url}")
        return 0
