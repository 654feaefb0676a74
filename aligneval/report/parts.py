"""The pieces a report is made of (a section with its plots and table), shared by the section builders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aligneval.report.displays import figure_png


@dataclass
class Plot:
    key: str
    title: str
    caption: str
    png: bytes
    alt: str
    wide: bool = False  # spans the whole row of the figure grid (several panels side by side)

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


def plot_of(key: str, display, title: str, alt: str, wide: bool = False) -> Plot:
    """Render an already plotted Display to PNG."""
    return Plot(key, title, alt, figure_png(display), alt, wide)
