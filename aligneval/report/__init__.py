"""Reports from stored results: report.html (self-contained), report.md + plots/, comparison.json.

    from aligneval.report import build_report
    paths = build_report("runs/x", "reports/x")

Reads results.json and the cached predictions only; never loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("html", "md")


@dataclass
class ReportPaths:
    out: Path
    comparison: Path
    html: Path | None = None
    markdown: Path | None = None
    plots: list[Path] = field(default_factory=list)


def build_report(run_or_results: Any, out: str | Path, *, baseline: str = "baseline", candidate: str | None = None,
                 resamples: int = 1000, seed: int = 0, holm: bool = False, confidence: float = 0.95,
                 alpha: float = 0.05, against: Any = None, comparison: Any = None, max_examples: int = 25,
                 formats: tuple[str, ...] = FORMATS) -> ReportPaths:
    """Compare (unless a Comparison is given), then write comparison.json, report.html and report.md."""
    from aligneval.errors import UsageError
    from aligneval.report.context import build_context

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown report format '{bad[0]}'; choose from {', '.join(FORMATS)}")
    if comparison is None:
        from aligneval.compare import compare

        comparison = compare(run_or_results, baseline, candidate, resamples=resamples, seed=seed, holm=holm,
                             confidence=confidence, alpha=alpha, against=against)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(out, comparison.write(out / "comparison.json"))
    ctx = build_context(comparison, max_examples=max_examples)
    if "html" in formats:
        from aligneval.report.html import write_html

        paths.html = write_html(ctx, out / "report.html")
    if "md" in formats:
        from aligneval.report.markdown import write_markdown

        paths.markdown = write_markdown(ctx, out)
        paths.plots = sorted((out / "plots").glob("*.png"))
    return paths
