"""The pieces a report is made of (a section with its plots and table), shared by the section builders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aligneval.report import figures


@dataclass
class Plot:
    key: str
    title: str
    caption: str
    figure: bytes | figures.PendingFigure  # PNG bytes, or a figure a worker is drawing
    alt: str
    wide: bool = False  # spans the whole row of the figure grid (several panels side by side)

    @property
    def png(self) -> bytes:
        """The PNG bytes (waits for the worker drawing it, if any)."""
        return figures.png_of(self.figure)

    @property
    def filename(self) -> str:
        return f"{self.key}.png"


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    plots: list[Plot] = field(default_factory=list)
    table: dict[str, Any] | None = None  # {"columns": [...], "rows": [[...]], "numeric": set(col idx)}
    note: str = ""
    lines: list[str] = field(default_factory=list)  # plain-text paragraphs under the intro


def plot_of(key: str, display, title: str, alt: str, wide: bool = False, **options) -> Plot:
    """A Plot of an unplotted Display, drawn with `display.plot(**options)` (in a figure worker when the
    report runs them: aligneval.report.figures)."""
    return Plot(key, title, alt, figures.submit(display, **options), alt, wide)
