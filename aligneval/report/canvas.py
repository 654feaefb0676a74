"""The report's figures on matplotlib, without pyplot: the palette and style, a new figure on its own
Agg canvas, and a drawn figure's PNG bytes. pyplot is never imported: its figure registry is not needed
on Agg, and a notebook's backend stays as the user set it."""

from __future__ import annotations

import functools
import io
from typing import Any, Callable

BASELINE_COLOR = "#E69F00"  # Okabe-Ito orange
CANDIDATE_COLOR = "#0072B2"  # Okabe-Ito blue
VERDICT_COLORS = {"better": "#009E73", "worse": "#D55E00", "no-difference": "#6B7280", "n/a": "#9CA3AF"}
INK, GRID, MUTED = "#1F2937", "#E5E7EB", "#6B7280"


def model_colors(models: list[str]) -> dict[str, str]:
    """Baseline first (orange), candidate second (blue), any others from the rest of Okabe-Ito."""
    palette = [BASELINE_COLOR, CANDIDATE_COLOR, "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#D55E00"]
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def styled_matplotlib():
    """matplotlib with the report's style (imported here: a heavy optional library); pyplot would add
    0.01-0.27 s to a figure worker's start (5 alternations, session 13)."""
    import matplotlib
    import matplotlib.figure  # noqa: F401 - imported for new_figure
    from matplotlib.backends import backend_agg  # noqa: F401 - imported for new_figure

    matplotlib.rcParams.update({
        "font.size": 9.5, "axes.titlesize": 10.5, "axes.titleweight": "bold", "axes.labelsize": 9.5,
        "axes.edgecolor": "#9CA3AF", "axes.labelcolor": INK, "text.color": INK, "xtick.color": MUTED,
        "ytick.color": MUTED, "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "legend.fontsize": 8.5, "figure.dpi": 100, "svg.fonttype": "none",
        # no snapping of glyph outlines to the pixel grid: at the figures' 144 dpi the text looks the
        # same, and drawing it takes a fifth less time (text is most of a figure's drawing)
        "text.hinting": "none",
    })
    return matplotlib


def in_report_style(plot: Callable) -> Callable:
    """For a display's `plot`: the report's style applies to everything it draws, on a new figure or on
    axes the caller passed (as it did when every plot started by setting pyplot up)."""

    @functools.wraps(plot)
    def styled_plot(*args: Any, **kwargs: Any):
        styled_matplotlib()
        return plot(*args, **kwargs)

    return styled_plot


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], layout: str | None = None,
               **subplot_options: Any):
    """A figure on the Agg canvas and its axes, as `pyplot.subplots` returns them but outside pyplot:
    (figure, axes), with `subplot_options` passed to `Figure.subplots` (sharex, squeeze, gridspec_kw)."""
    mpl = styled_matplotlib()
    fig = mpl.figure.Figure(figsize=figsize, layout=layout)
    mpl.backends.backend_agg.FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplot_options)


def style_axes(ax) -> None:
    """The report's light grid, drawn below the data."""
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def figure_png(display, dpi: int = 144) -> bytes:
    """Render a plotted display's figure to PNG bytes, cropped to what it draws (outside pyplot there is
    no figure registry to close it in: it is freed with the display).

    The crop is measured before the one draw (the layout engine's pass, then the artists' extents):
    `bbox_inches="tight"` would draw the whole figure an extra time to measure it, a third of the
    report's time. zlib level 1 instead of PIL's 6: 10-40 ms less per figure for ~12% more bytes
    (measured on the report_speed figures)."""
    import matplotlib

    fig = display.figure_
    renderer = fig.canvas.get_renderer()
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    box = fig.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=box, facecolor="white", metadata={"Software": None},
                pil_kwargs={"compress_level": 1})
    return buf.getvalue()
