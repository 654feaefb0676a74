"""`aligneval gate RUN --rules rules.toml [--against OLD] [--junit junit.xml]`: the CI regression gate.

Exit codes: 0 every rule passes, 1 a regression, 2 usage or rules error, 3 missing or corrupt artifacts,
4 unusable data (runs that cannot be paired; a significance rule with too few examples for a verdict).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from aligneval.commands.stat_options import stat_option


def register(app: typer.Typer) -> None:
    @app.command("gate")
    def gate_command(
        run: Path = typer.Argument(..., help="The new run folder (runs/<name>) or its results.json."),
        rules: Path = typer.Option(..., "--rules", "-r", help="rules.toml: one rule per line."),
        against: Optional[Path] = stat_option("against", gate=True),
        baseline: Optional[str] = stat_option("baseline", gate=True),
        candidate: Optional[str] = stat_option("candidate", gate=True),
        junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML, one test case per rule."),
        summary: Optional[Path] = typer.Option(None, "--summary",
                                               help="Append a markdown summary here (default $GITHUB_STEP_SUMMARY)."),
        resamples: Optional[int] = stat_option("resamples", gate=True),
        seed: Optional[int] = stat_option("seed", gate=True),
        adjust: Optional[str] = stat_option("adjust", gate=True),
        min_n: Optional[int] = stat_option("min_n", gate=True),
        max_resamples: Optional[int] = stat_option("max_resamples", gate=True),
        comparison: Optional[Path] = typer.Option(None, "--comparison",
                                                  help="The comparison.json to read when fresh (default: "
                                                       "<run>/comparison.json, then reports/<run name>/, then the run folder's parent)."),
    ) -> int:
        """Check the rules in rules.toml against a run (optionally against an older run); exit 0 pass,
        1 regression, 2 usage or rules error, 3 missing or corrupt artifacts, 4 unusable data or too few
        examples for a verdict. Reads the report's comparison.json when it is fresh. See docs/ci.md."""
        from aligneval.gate import gate

        result = gate(run, rules, against=against, baseline=baseline, candidate=candidate, junit=junit,
                      summary=summary, resamples=resamples, seed=seed, adjust=adjust, min_n=min_n,
                      max_resamples=max_resamples, comparison=comparison)
        _print(result)
        if os.environ.get("GITHUB_ACTIONS") == "true":  # annotations on the job page (docs/ci.md)
            from aligneval.gate import github_annotations

            for line in github_annotations(result, str(rules)):
                typer.echo(line)
        return result.exit_code


STATUS = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "insufficient": "[yellow]NO VERDICT[/]"}


def _print(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"gate: {result.title()}"))
    for col in ("rule", "check", "result", "details"):
        table.add_column(col, overflow="fold")
    for o in result.outcomes:
        table.add_row(escape(o.name), escape(o.rule.text), STATUS[o.status], escape(o.message))
    console = _console()
    console.print(table)
    n, f, e = len(result.outcomes), len(result.failures), len(result.insufficient)
    if f:
        console.print(f"[red]{f} of {n} rules failed[/]")
    if e:
        console.print(f"[yellow]{e} of {n} rules have no verdict: too few examples (exit 4 unless a rule failed)[/]")
    if not f and not e:
        console.print(f"[green]all {n} rules passed[/]")
    if result.comparison:
        typer.echo(f"comparison: {result.comparison}")
    for kind, path in result.files.items():
        typer.echo(f"wrote {kind}: {path}")


def _console():
    """Rich console; at least 120 columns when writing to a pipe or CI log (rich assumes 80)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)
