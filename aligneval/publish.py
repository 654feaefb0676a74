"""Where a report's results go besides its own folder: model cards and experiment trackers.

Both read the comparison.json the report has just written (aligneval.findings), so the cards, the
trackers and the gate state one value and one verdict per row. Cards (our own files) are written
before any tracker is contacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from aligneval import card, findings, tracking
from aligneval.compare import load
from aligneval.tracking.payload import for_report


def write_cards(run, comparisons: list[findings.StoredComparison], folder: str | Path) -> list[Path]:
    """One card per model (seed groups as one) of the run: `<folder>/<model>/README.md`."""
    results = load(run)
    return [card.write(results, model, comparisons, Path(folder) / name / "README.md")
            for name, model in card.run_models(results).items()]


def publish_report(run, paths, trackers: Iterable[str], cards: str | Path | None = None) -> list[str]:
    """After `aligneval report`: the model cards (when `cards` names a folder), then every tracker.
    `paths`: the report's written files (aligneval.report.build_report's result). Returns console lines."""
    comparisons = findings.read(run, paths.comparison)
    lines = [f"wrote {p}" for p in write_cards(run, comparisons, cards)] if cards is not None else []
    trackers = list(trackers)
    if trackers:
        results = load(run)
        files = [p for p in (paths.html, paths.markdown, paths.comparison) if p is not None]
        lines += tracking.publish(trackers, for_report(results, comparisons, files), results.run_dir)
    return lines
