"""Reports from stored results: report.html (self-contained), report.md + plots/, comparison.json.

    from aligneval.report import build_report
    paths = build_report("runs/x", "reports/x")

Reads results.json (records and stored curves) only; never loads a model, never reads prediction
files, never recomputes a metric (the comparison, aligneval.compare, does the paired statistics).
A run with several aligned twins of one baseline (one per λ) gets one comparison per twin.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligneval.artifacts import write_json_atomic
from aligneval.compare import comparisons, jsonable, lambdas
from aligneval.errors import UsageError
from aligneval.paths import check_output_dir, check_output_file
from aligneval.report import figures
from aligneval.report.build import build_context
from aligneval.report.context import as_comparisons
from aligneval.report.html import write_html
from aligneval.report.markdown import write_markdown

FORMATS = ("html", "md")


@dataclass
class ReportPaths:
    out: Path
    comparison: Path
    html: Path | None = None
    markdown: Path | None = None
    plots: list[Path] = field(default_factory=list)


def check_out(out: Path) -> None:
    """Refuse, before any work, an output folder that cannot be made or a report file that cannot be
    written (UsageError naming the path)."""
    check_output_dir(out, "--out")
    for name in ("comparison.json", "report.html", "report.md"):
        check_output_file(out / name, "--out")
    check_output_dir(out / "plots", "--out")


def build_report(run_or_results: Any, out: str | Path, *, baseline: str = "baseline",
                 candidate: str | list[str] | None = None, resamples: int = 1000, seed: int = 0, holm: bool = False,
                 confidence: float = 0.95, alpha: float = 0.05, against: Any = None, comparison: Any = None,
                 max_examples: int = 25, formats: tuple[str, ...] = FORMATS) -> ReportPaths:
    """Compare (unless given), then write comparison.json, report.html and report.md.

    `comparison`: one Comparison, or several (a list or {name: Comparison}) of twins against the same
    baseline. Without it, `candidate` names the twin (or a list of twins); when it is None and the run
    holds several models besides the baseline, each of them is compared with the baseline.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown report format '{bad[0]}'; choose from {', '.join(FORMATS)}")
    out = Path(out)
    check_out(out)
    workers = figures.default_workers()  # a bad ALIGNEVAL_FIGURE_WORKERS fails here, before the comparison
    if comparison is None:
        comparison = comparisons(run_or_results, baseline=baseline, candidate=candidate, against=against,
                                 resamples=resamples, seed=seed, holm=holm, confidence=confidence, alpha=alpha)
    comps = as_comparisons(comparison)
    out.mkdir(parents=True, exist_ok=True)
    with collector_paused(), figures.rendering(workers):  # figures drawn by forked workers beside the rest
        paths = ReportPaths(out, write_comparisons(comps, out / "comparison.json"))
        ctx = build_context(comps, max_examples=max_examples)
        if "html" in formats:
            paths.html = write_html(ctx, out / "report.html")
        if "md" in formats:
            paths.markdown = write_markdown(ctx, out)
            paths.plots = sorted((out / "plots").glob("*.png"))
    return paths


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector paused while the report is written. matplotlib's import and
    the figures allocate ~140,000 objects that all live until the report is done, and the collector
    kept re-scanning them: about 0.13 s of a 1.1 s report (benchmarks/report_speed.py). Nothing is
    kept longer than that: the closed figures' cycles are freed by the next collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def write_comparisons(comps: list, path: Path) -> Path:
    """comparison.json. One twin: the results document plus its "comparison" section (as `aligneval
    compare` writes it). Several twins: "comparison" is the first twin's (lowest λ) and "comparisons"
    holds every twin's section, each with its "lambda", in λ order."""
    if len(comps) == 1:
        return comps[0].write(path)
    lam = lambdas(comps)
    doc = comps[0].to_doc()
    doc["comparisons"] = [{**c.to_doc()["comparison"], "lambda": lam.get(c.candidate)} for c in comps]
    return write_json_atomic(path, jsonable(doc))
