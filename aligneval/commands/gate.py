"""`aligneval gate RUN --rules rules.toml [--against OLD] [--junit junit.xml]`: the CI regression gate.

Exit codes: 0 every rule passes, 1 a regression, 2 usage or rules error, 3 missing or corrupt artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("gate")
    def gate_command(
        run: Path = typer.Argument(..., help="The new run folder (runs/<name>) or its results.json."),
        rules: Path = typer.Option(..., "--rules", "-r", help="rules.toml: one rule per line."),
        against: Optional[Path] = typer.Option(None, "--against",
                                               help="An older run or results.json whose baseline model is the "
                                                    "reference (e.g. the last release)."),
        baseline: Optional[str] = typer.Option(None, "--baseline", "-b", help="Baseline model (default 'baseline')."),
        candidate: Optional[str] = typer.Option(None, "--candidate", "-c",
                                                help="Candidate model (default: the only other model)."),
        junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML, one test case per rule."),
        summary: Optional[Path] = typer.Option(None, "--summary",
                                               help="Append a markdown summary here (default $GITHUB_STEP_SUMMARY)."),
        resamples: Optional[int] = typer.Option(None, "--resamples", help="Bootstrap resamples (default 1000)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Bootstrap seed (default 0)."),
    ) -> int:
        """Check the rules in rules.toml against a run (optionally against an older run); exit 0 pass,
        1 regression, 2 usage or rules error, 3 missing or corrupt artifacts. See docs/ci.md."""
        from aligneval.gate import gate

        result = gate(run, rules, against=against, baseline=baseline, candidate=candidate, junit=junit,
                      summary=summary, resamples=resamples, seed=seed)
        _print(result)
        return result.exit_code


def _print(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"gate: {result.title()}"))
    for col in ("rule", "check", "result", "details"):
        table.add_column(col, overflow="fold")
    for o in result.outcomes:
        table.add_row(escape(o.name), escape(o.rule.text), "[green]pass[/]" if o.passed else "[red]FAIL[/]",
                      escape(o.message))
    console = _console()
    console.print(table)
    n, f = len(result.outcomes), len(result.failures)
    console.print(f"[red]{f} of {n} rules failed[/]" if f else f"[green]all {n} rules passed[/]")
    for kind, path in result.files.items():
        typer.echo(f"wrote {kind}: {path}")


def _console():
    """Rich console; at least 120 columns when writing to a pipe or CI log (rich assumes 80)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)
