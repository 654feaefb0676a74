"""`aligneval compare RUN` and `aligneval report RUN --out DIR`: paired statistics and reports from stored
results. Both read files only (results.json, cached predictions); neither loads a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from aligneval.commands.stat_options import stat_option

RUN_HELP = "A run folder (runs/<name>) or its results.json."


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_command(
        run: Path = typer.Argument(..., help=RUN_HELP),
        baseline: str = stat_option("baseline"),
        candidate: Optional[str] = stat_option("candidate"),
        against: Optional[Path] = stat_option("against"),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Where to write comparison.json (default: <run>/comparison.json)."),
        resamples: int = stat_option("resamples"),
        seed: int = stat_option("seed"),
        holm: bool = stat_option("holm"),
        adjust: str = stat_option("adjust"),
        min_n: int = stat_option("min_n"),
        max_resamples: int = stat_option("max_resamples"),
        confidence: float = stat_option("confidence"),
        show_all: bool = typer.Option(False, "--all", help="Print every split, not only the test split."),
    ) -> int:
        """Candidate - baseline for every metric and split: paired bootstrap CI, exact McNemar, verdict."""
        from aligneval.compare import compare
        from aligneval.paths import check_output_file

        target = out or ((run if run.is_dir() else run.parent) / "comparison.json")
        if target.suffix != ".json":
            target = target / "comparison.json"
        check_output_file(target, "--out")  # before the bootstrap
        comp = compare(run, baseline, candidate, resamples=resamples, seed=seed, holm=holm, adjust=adjust,
                       min_n=min_n, max_resamples=max_resamples, confidence=confidence, against=against)
        comp.write(target)
        print_comparison(comp, show_all)
        typer.echo(f"wrote {target}")
        return 0

    @app.command("report")
    def report_command(
        run: Path = typer.Argument(..., help=RUN_HELP),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default reports/<run name>)."),
        baseline: str = stat_option("baseline"),
        candidate: Optional[str] = stat_option("candidate"),
        against: Optional[Path] = stat_option("against"),
        fmt: List[str] = typer.Option(["html", "md"], "--format", "-f", help="html and/or md; repeat."),
        resamples: int = stat_option("resamples"),
        seed: int = stat_option("seed"),
        holm: bool = stat_option("holm"),
        adjust: str = stat_option("adjust"),
        min_n: int = stat_option("min_n"),
        max_resamples: int = stat_option("max_resamples"),
        confidence: float = stat_option("confidence"),
        max_examples: int = typer.Option(25, "--max-examples", min=0, help="Rows in the example tables."),
        log_to: List[str] = typer.Option([], "--log-to", help="Also log to an experiment tracker: mlflow | wandb "
                                         "(repeat for both; optional extras, docs/integrations.md)."),
        model_cards: bool = typer.Option(False, "--model-cards", help="Also write a Hugging Face model card "
                                         "per model: <out>/cards/<model>/README.md (see `aligneval card`)."),
    ) -> int:
        """Write report.html (one self-contained file), report.md + plots/ and comparison.json.
        A comparison.json already in the report folder is reused when it is fresh (same results, same
        settings), so the report and `aligneval gate` always show the same comparison."""
        from aligneval import tracking
        from aligneval.compare import comparisons
        from aligneval.errors import UsageError
        from aligneval.paths import check_output_dir
        from aligneval.report import FORMATS, build_report, check_out

        trackers = tracking.check(log_to)
        run_dir = run if run.is_dir() else run.parent
        target = check_output_dir(out or Path("reports") / run_dir.resolve().name, "--out")
        bad = [f for f in fmt if f not in FORMATS]
        if bad:
            raise UsageError(f"unknown report format '{bad[0]}'; choose from {', '.join(FORMATS)}")
        check_out(target)  # before the bootstrap
        comps = comparisons(run, baseline=baseline, candidate=candidate, against=against,
                            stored=[target / "comparison.json"], resamples=resamples, seed=seed, holm=holm,
                            adjust=adjust, min_n=min_n, max_resamples=max_resamples, confidence=confidence)
        paths = build_report(run, target, baseline=baseline, candidate=candidate, against=against,
                             comparison=comps, max_examples=max_examples, formats=tuple(fmt))
        for c in comps:
            if c.source != "computed":
                typer.echo(f"reused {c.source} (fresh: same results and settings)")
        for p in (paths.html, paths.markdown, paths.comparison):
            if p is not None:
                typer.echo(f"wrote {p}")
        if model_cards or trackers:  # after the report's own files: a tracker that fails loses nothing
            from aligneval.publish import publish_report

            for line in publish_report(run, paths, trackers, cards=target / "cards" if model_cards else None):
                typer.echo(line)
        return 0


def print_comparison(comp, show_all: bool = False, metrics: tuple[str, ...] | None = None) -> None:
    """The headline table: one row per metric on the test split (every split with --all);
    `metrics` keeps only those metric names, in that order."""
    from rich.markup import escape
    from rich.table import Table

    from aligneval.report.context import comparison_row, metric_rank

    colors = {"better": "green", "worse": "red", "no-difference": "dim", "n/a": "dim", "insufficient": "yellow"}
    rows = sorted(comp.records, key=lambda r: (r.split, metric_rank(r.metric)))
    splits = sorted({r.split for r in rows})
    roles = {s: ((getattr(comp.results, "doc", {}) or {}).get("data", {}).get(s) or {}).get("role") for s in splits}
    tests = [s for s in splits if roles.get(s) == "test"]
    if not show_all and tests:
        rows = [r for r in rows if r.split in tests]
    if metrics is not None:
        order = {m: i for i, m in enumerate(metrics)}
        rows = sorted((r for r in rows if r.metric in order),
                      key=lambda r: (roles.get(r.split) != "test", r.split, order[r.metric]))
    conf = f"{comp.settings.get('confidence', 0.95):.0%}"
    table = Table(title=escape(f"{comp.candidate} vs {comp.baseline}"))
    for col, just in (("split", "left"), ("metric", "left"), (escape(comp.baseline), "right"), (escape(comp.candidate), "right"),
                      ("Δ", "right"), (f"{conf} CI", "right"), ("p", "right"), ("verdict", "left")):
        table.add_column(col, justify=just)
    seen = set()
    for r in rows:
        if (r.split, r.metric) in seen:
            continue
        seen.add((r.split, r.metric))
        c = comparison_row(r)
        table.add_row(escape(r.split), escape(f"{r.metric} {c['direction']}"), c["baseline"], c["candidate"],
                      c["delta"], escape(c["ci"]), c["p"], f"[{colors.get(r.verdict, 'dim')}]{c['verdict_text']}[/]")
    _console().print(table)
    for w in comp.warnings:
        typer.echo(f"warning: {w}", err=True)


def _console():
    """Rich console; at least 120 columns when writing to a pipe or CI log (rich assumes 80)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)
