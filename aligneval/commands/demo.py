"""`aligneval demo`: the embedded default, a real model on real data, offline."""

from __future__ import annotations

from pathlib import Path

import typer


HEADLINE = ("accuracy", "ece@15", "ts:ece@15", "brier", "nll", "aurc", "deepwordbug:accuracy_under_attack",
            "kq_mmd2", "kq_probe_acc")


def demo_command(
    out: Path = typer.Option(Path("reports/demo"), "--out", help="Folder for checkpoints, run and report."),
    profile: str = typer.Option("quick", "--profile", help="quick (about 8 min on 2 CPU cores) or full (3 seeds × a λ "
                                "grid of 3 twins, about 150 min)."),
    model: str = typer.Option(None, "--model", help="Another encoder (hub id or folder) instead of all-MiniLM-L6-v2."),
    scale: float = typer.Option(1.0, "--scale", hidden=True, help="Test-only: shrink every size by this factor."),
) -> None:
    """Convert all-MiniLM-L6-v2 to alignment attention, fine-tune both, evaluate, compare and report."""
    from aligneval.commands.report import print_comparison
    from aligneval.demo import demo

    summary = demo(out=out, profile=profile, model=model, scale=scale, log=typer.echo)
    for name, comparison in summary["comparisons"].items():
        if len(summary["comparisons"]) > 1:
            typer.echo(f"\n{name} vs baseline")
        print_comparison(comparison, show_all=True, metrics=HEADLINE)
    report = summary["report"]
    typer.echo(f"report:   {report.html}\nmarkdown: {report.markdown}\nrun:      {summary['run']}")
    typer.echo(f"done in {summary['seconds']:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
