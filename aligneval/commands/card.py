"""`aligneval card RUN [--model NAME] [--out FOLDER/README.md]`: a Hugging Face model card with
`model-index` for a model of a run, from results.json and the report's comparison.json (aligneval.card)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("card")
    def card_command(
        run: Path = typer.Argument(..., help="A run folder (runs/<name>) or its results.json."),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="The model (or seed group) to describe (default: the only twin)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="The README.md to write or update "
                                                "(default: <model folder>/README.md)."),
        comparison: Optional[Path] = typer.Option(None, "--comparison",
                                                  help="The comparison.json to read (default: where `gate` looks)."),
        repo_id: Optional[str] = typer.Option(None, "--repo-id",
                                              help="The Hub repo the card will live in (used in the loading example)."),
        base_model: Optional[str] = typer.Option(None, "--base-model",
                                                 help="The base model's Hub id, when it was trained from a local "
                                                      "folder (default: alignment.json's base_model if a Hub id)."),
    ) -> int:
        """Write or update a model card: YAML metadata with model-index (intervals, n, seeds and the paired
        comparison in each metric's args) and prose on training, findings and loading. An existing
        README.md keeps its other metadata and text."""
        from aligneval import card, findings
        from aligneval.compare import load
        from aligneval.errors import UsageError

        results = load(run)
        comps = findings.read(run, comparison)
        chosen = card.pick_model(results, model, comps)
        target = out
        if target is None:
            folder = Path(chosen.path)
            if len(chosen.members) > 1 or not folder.is_dir():
                why = "has several seeds" if len(chosen.members) > 1 else f"is not a local folder ({folder})"
                raise UsageError(f"say where the card goes with --out: model '{chosen.name}' {why}")
            target = folder / "README.md"
        path = card.write(results, chosen, comps, target, where=repo_id, base_model=base_model)
        typer.echo(f"wrote {path}")
        return 0
