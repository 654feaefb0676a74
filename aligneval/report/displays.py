"""Display objects (scikit-learn style): `from_results(...)` gathers stored numbers and keeps them as
attributes, `.plot(ax=...)` draws them with matplotlib (Agg). They read records, curves and cached
predictions; they never load a model and never recompute a metric that a record already holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BASELINE_COLOR = "#E69F00"  # Okabe-Ito orange
CANDIDATE_COLOR = "#0072B2"  # Okabe-Ito blue
VERDICT_COLORS = {"better": "#009E73", "worse": "#D55E00", "no-difference": "#6B7280", "n/a": "#9CA3AF"}
INK, GRID, MUTED = "#1F2937", "#E5E7EB", "#6B7280"


def model_colors(models: list[str]) -> dict[str, str]:
    """Baseline first (orange), candidate second (blue), any others from the rest of Okabe-Ito."""
    palette = [BASELINE_COLOR, CANDIDATE_COLOR, "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#D55E00"]
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 9.5, "axes.titlesize": 10.5, "axes.titleweight": "bold", "axes.labelsize": 9.5,
        "axes.edgecolor": "#9CA3AF", "axes.labelcolor": INK, "text.color": INK, "xtick.color": MUTED,
        "ytick.color": MUTED, "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "legend.fontsize": 8.5, "figure.dpi": 100, "svg.fonttype": "none",
    })
    return plt


def _style(ax) -> None:
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _curve(results, name: str, split: str, model: str) -> dict | None:
    for c in getattr(results, "curves", []) or []:
        if c.name == name and c.split == split and c.model == model:
            return c.data
    return None


def _value(results, metric: str, split: str, model: str):
    for r in results.records:
        if r.metric == metric and r.split == split and r.model == model and r.value is not None:
            return r
    return None


@dataclass
class ReliabilityDisplay:
    """Reliability diagram of several models on one split, with the confidence histogram under it."""

    split: str
    bins: dict[str, dict[str, list]]  # model -> bin_lower, bin_upper, confidence, accuracy, count
    ece: dict[str, float | None] = field(default_factory=dict)
    metric: str = "ece@15"

    @classmethod
    def from_results(cls, results, split: str, models: list[str], metric: str = "ece@15") -> "ReliabilityDisplay":
        bins: dict[str, dict] = {}
        for m in models:
            data = _curve(results, "reliability", split, m)
            if data is None:  # older runs without stored curves: derive the bins from cached predictions
                from aligneval.metrics.calibration import reliability_bins

                p = results.predictions(m, split)
                data = reliability_bins(np.asarray(p.probs, float), np.asarray(p.labels), 15)
            bins[m] = data
        ece = {m: (r.value if (r := _value(results, metric, split, m)) else None) for m in models}
        return cls(split, bins, ece, metric)

    def plot(self, ax=None, ax_hist=None, colors: dict[str, str] | None = None):
        plt = _plt()
        if ax is None:
            fig, (ax, ax_hist) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
        colors = colors or model_colors(list(self.bins))
        ax.plot([0, 1], [0, 1], ls="--", color="#9CA3AF", lw=1, label="perfect calibration")
        n_models = len(self.bins)
        for i, (m, d) in enumerate(self.bins.items()):
            lo, hi = np.asarray(d["bin_lower"], float), np.asarray(d["bin_upper"], float)
            acc = np.array([np.nan if a is None else a for a in d["accuracy"]], float)
            conf = np.array([np.nan if c is None else c for c in d["confidence"]], float)
            ok = ~np.isnan(acc)
            e = self.ece.get(m)
            label = f"{m}" + (f"  ({self.metric.upper()} {e:.3f})" if e is not None else "")
            ax.plot(conf[ok], acc[ok], marker="o", ms=4, lw=1.8, color=colors[m], label=label)
            if ax_hist is not None:
                width = (hi - lo) / n_models
                counts = np.asarray(d["count"], float)
                share = counts / max(counts.sum(), 1)
                ax_hist.bar(lo + i * width, share, width=width, align="edge", color=colors[m], alpha=0.85)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy in bin", title=f"Reliability · {self.split}")
        ax.set_aspect("auto")
        _style(ax)
        ax.legend(loc="upper left")
        if ax_hist is not None:
            ax_hist.set(xlim=(0, 1), xlabel="confidence (max softmax probability)", ylabel="share")
            _style(ax_hist)
        else:
            ax.set_xlabel("confidence (max softmax probability)")
        self.ax_, self.ax_hist_, self.figure_ = ax, ax_hist, ax.figure
        return self


@dataclass
class RiskCoverageDisplay:
    """Selective risk against coverage when keeping the most confident examples (lower is better)."""

    split: str
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # model -> (coverage, risk)
    aurc: dict[str, float | None] = field(default_factory=dict)
    max_points: int = 400

    @classmethod
    def from_results(cls, results, split: str, models: list[str]) -> "RiskCoverageDisplay":
        curves = {}
        for m in models:
            data = _curve(results, "risk_coverage", split, m)
            if data is None:
                from aligneval.metrics.uncertainty import risk_coverage

                p = results.predictions(m, split)
                data = risk_coverage(np.asarray(p.probs, float), np.asarray(p.labels))
            curves[m] = (np.asarray(data["coverage"], float), np.asarray(data["risk"], float))
        aurc = {m: (r.value if (r := _value(results, "aurc", split, m)) else None) for m in models}
        return cls(split, curves, aurc)

    def plot(self, ax=None, colors: dict[str, str] | None = None):
        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(4.6, 3.6))
        colors = colors or model_colors(list(self.curves))
        for m, (cov, risk) in self.curves.items():
            if len(cov) > self.max_points:  # thin very long curves; the shape is unchanged at this size
                keep = np.unique(np.r_[np.linspace(0, len(cov) - 1, self.max_points).astype(int)])
                cov, risk = cov[keep], risk[keep]
            a = self.aurc.get(m)
            ax.step(cov, risk, where="post", lw=1.8, color=colors[m],
                    label=m + (f"  (AURC {a:.3f})" if a is not None else ""))
        ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage (share of examples kept)",
               ylabel="risk (error rate of kept)", title=f"Risk–coverage · {self.split}")
        _style(ax)
        ax.legend(loc="upper left")
        self.ax_, self.figure_ = ax, ax.figure
        return self


@dataclass
class OodDisplay:
    """In-domain vs out-of-domain values per model, with the in→out change printed on the bars."""

    metric: str
    in_split: str
    ood_splits: list[str]
    values: dict[str, dict[str, float]]  # model -> split -> value

    @classmethod
    def from_results(cls, results, metric: str, in_split: str, ood_splits: list[str], models: list[str]):
        values = {m: {s: r.value for s in [in_split, *ood_splits] if (r := _value(results, metric, s, m))}
                  for m in models}
        return cls(metric, in_split, ood_splits, values)

    def drops(self) -> dict[str, dict[str, float]]:
        """model -> ood split -> (ood - in-domain)."""
        return {m: {s: v[s] - v[self.in_split] for s in self.ood_splits if s in v and self.in_split in v}
                for m, v in self.values.items()}

    def plot(self, ax=None, colors: dict[str, str] | None = None):
        plt = _plt()
        splits = [self.in_split, *self.ood_splits]
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.2, 1.6 * len(splits) + 1.5), 3.4))
        colors = colors or model_colors(list(self.values))
        width = 0.8 / max(len(self.values), 1)
        x = np.arange(len(splits))
        drops = self.drops()
        for i, (m, vals) in enumerate(self.values.items()):
            ys = np.array([vals.get(s, np.nan) for s in splits], float)
            bars = ax.bar(x - 0.4 + width * (i + 0.5), ys, width=width * 0.92, color=colors[m], label=m)
            for j, (bar, s) in enumerate(zip(bars, splits)):
                if np.isnan(ys[j]):
                    continue
                txt = f"{ys[j]:.3f}" if j == 0 else f"{ys[j]:.3f}\nΔ {drops[m].get(s, float('nan')):+.3f}"
                ax.annotate(txt, (bar.get_x() + bar.get_width() / 2, ys[j]), ha="center", va="bottom",
                            fontsize=7.5, xytext=(0, 2), textcoords="offset points", color=INK)
        ax.set_xticks(x, [f"{s}\n(in-domain)" if s == self.in_split else f"{s}\n(out-of-domain)" for s in splits])
        top = np.nanmax([v for vals in self.values.values() for v in vals.values()] or [1.0])
        ax.set(ylabel=self.metric, title=f"{self.metric}: in-domain vs out-of-domain", ylim=(0, top * 1.28))
        _style(ax)
        ax.legend(loc="upper right", ncols=len(self.values))
        self.ax_, self.figure_ = ax, ax.figure
        return self


@dataclass
class TemperatureDisplay:
    """A calibration metric before and after temperature scaling (T fitted on dev), per model and split."""

    metric: str
    rows: list[dict[str, Any]]  # model, split, before, after, temperature

    @classmethod
    def from_results(cls, results, metric: str, models: list[str]) -> "TemperatureDisplay":
        rows = []
        for r in results.records:
            if r.metric == f"ts:{metric}" and r.model in models and r.value is not None:
                before = _value(results, metric, r.split, r.model)
                if before is not None:
                    rows.append({"model": r.model, "split": r.split, "before": before.value, "after": r.value,
                                 "temperature": r.temperature})
        return cls(metric, rows)

    def plot(self, ax=None, colors: dict[str, str] | None = None):
        plt = _plt()
        labels = [f"{r['split']}\n{r['model']}" for r in self.rows]
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.4, 0.95 * len(self.rows) + 1.5), 3.4))
        colors = colors or model_colors(sorted({r["model"] for r in self.rows}))
        x = np.arange(len(self.rows))
        before = [r["before"] for r in self.rows]
        after = [r["after"] for r in self.rows]
        ax.bar(x - 0.2, before, width=0.38, color=[colors[r["model"]] for r in self.rows], alpha=0.35,
               edgecolor=[colors[r["model"]] for r in self.rows], label="before (raw)")
        ax.bar(x + 0.2, after, width=0.38, color=[colors[r["model"]] for r in self.rows], label="after (T-scaled)")
        for xi, r in zip(x, self.rows):
            t = r["temperature"]
            ax.annotate(f"T={t:.2f}" if t is not None else "", (xi, max(r["before"], r["after"])), ha="center",
                        va="bottom", xytext=(0, 3), textcoords="offset points", fontsize=7.5, color=MUTED)
        ax.set_xticks(x, labels)
        ax.set(ylabel=self.metric, title=f"Temperature scaling: {self.metric} before → after",
               ylim=(0, max(before + after + [1e-9]) * 1.25))
        _style(ax)
        ax.legend(loc="upper left")
        self.ax_, self.figure_ = ax, ax.figure
        return self


@dataclass
class AttackDisplay:
    """Accuracy under attack by recipe for each model, next to its clean accuracy on the same split."""

    split: str
    recipes: list[str]
    under_attack: dict[str, dict[str, float]]  # model -> recipe -> accuracy under attack
    clean: dict[str, float | None]

    @classmethod
    def from_results(cls, results, models: list[str]) -> "AttackDisplay | None":
        under: dict[str, dict[str, float]] = {m: {} for m in models}
        split = None
        for r in results.records:
            parts = r.metric.split(":")
            if r.model in models and len(parts) == 2 and parts[1] == "accuracy_under_attack" and r.value is not None:
                under[r.model][parts[0]] = r.value
                split = split or r.split
        recipes = sorted({rc for v in under.values() for rc in v})
        if not recipes:
            return None
        clean = {m: (r.value if (r := _value(results, "accuracy", split, m)) else None) for m in models}
        return cls(split, recipes, under, clean)

    def plot(self, ax=None, colors: dict[str, str] | None = None):
        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.2, 1.5 * len(self.recipes) + 2), 3.4))
        colors = colors or model_colors(list(self.under_attack))
        groups = ["clean", *self.recipes]
        x = np.arange(len(groups))
        width = 0.8 / max(len(self.under_attack), 1)
        for i, (m, vals) in enumerate(self.under_attack.items()):
            ys = np.array([self.clean.get(m) if g == "clean" else vals.get(g) for g in groups], dtype=float)
            bars = ax.bar(x - 0.4 + width * (i + 0.5), ys, width=width * 0.92, color=colors[m], label=m)
            for bar, y in zip(bars, ys):
                if not np.isnan(y):
                    ax.annotate(f"{y:.2f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                                xytext=(0, 2), textcoords="offset points", fontsize=7.5)
        ax.set_xticks(x, groups)
        ax.set(ylim=(0, 1.15), ylabel="accuracy", title=f"Accuracy under attack · {self.split}")
        _style(ax)
        ax.legend(loc="upper right", ncols=len(self.under_attack))
        self.ax_, self.figure_ = ax, ax.figure
        return self


@dataclass
class ForestDisplay:
    """Δ (candidate − baseline) with its CI per metric and split, oriented so that right is better."""

    rows: list[dict[str, Any]]  # label, delta, ci_low, ci_high, verdict, higher_is_better
    confidence: float = 0.95

    @classmethod
    def from_results(cls, comparison_records: list[dict], max_rows: int = 40,
                     confidence: float = 0.95) -> "ForestDisplay":
        rows = []
        for r in comparison_records:
            if r.get("delta") is None or r.get("ci_low") is None or r.get("higher_is_better") is None:
                continue
            rows.append({"label": f"{r['metric']} · {r['split']}", "delta": r["delta"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "verdict": r["verdict"], "higher_is_better": r["higher_is_better"]})
        return cls(rows[:max_rows], confidence)

    def oriented(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(delta, low, high) multiplied by +1 / -1 so that positive always means 'candidate better'."""
        s = np.array([1.0 if r["higher_is_better"] else -1.0 for r in self.rows])
        d = np.array([r["delta"] for r in self.rows], float) * s
        a = np.array([r["ci_low"] for r in self.rows], float) * s
        b = np.array([r["ci_high"] for r in self.rows], float) * s
        return d, np.minimum(a, b), np.maximum(a, b)

    def plot(self, ax=None):
        plt = _plt()
        n = len(self.rows)
        if ax is None:
            _, ax = plt.subplots(figsize=(5.6, 1.0 + 0.24 * max(n, 1)))
        d, lo, hi = self.oriented()
        y = np.arange(n)[::-1]
        for yi, di, l, h, r in zip(y, d, lo, hi, self.rows):
            c = VERDICT_COLORS.get(r["verdict"], MUTED)
            ax.plot([l, h], [yi, yi], color=c, lw=2.2, solid_capstyle="round")
            ax.plot([di], [yi], "o", color=c, ms=5.5, mec="white", mew=0.8)
        ax.axvline(0, color="#374151", lw=1)
        splits = [r["label"].rsplit(" · ", 1)[-1] for r in self.rows]
        for i in range(1, n):
            if splits[i] != splits[i - 1]:
                ax.axhline(y[i] + 0.5, color="#9CA3AF", lw=0.8, ls=":")
        ax.set_yticks(y, [r["label"] for r in self.rows])
        lim = np.nanmax(np.abs(np.r_[lo, hi, 1e-6])) * 1.1
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel("Δ (candidate − baseline), flipped for lower-is-better\n← baseline better      candidate better →")
        ax.set_title(f"Differences with {self.confidence:.0%} intervals")
        ax.grid(True, axis="x", color=GRID)
        ax.set_axisbelow(True)
        self.ax_, self.figure_ = ax, ax.figure
        return self


def figure_png(display, dpi: int = 144) -> bytes:
    """Render a plotted display's figure to PNG bytes and close it."""
    import io

    plt = _plt()
    fig = display.figure_
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white",
                metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
