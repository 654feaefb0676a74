"""Display objects (scikit-learn style): `from_results(...)` gathers stored numbers and keeps them as
attributes, `.plot(ax=...)` draws them with matplotlib (Agg). They read records, stored curves and
comparison records only: no model, no prediction file, no metric recomputed. A plot whose curve the run
did not store says so ("no curve stored") instead of deriving one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aligneval.report import alignment as A
from aligneval.report.canvas import (  # noqa: F401 - the colours and figure_png are part of displays' API
    BASELINE_COLOR, CANDIDATE_COLOR, GRID, INK, MUTED, VERDICT_COLORS, figure_png, in_report_style, model_colors,
    new_figure, style_axes, styled_matplotlib)


def _curve(results, name: str, split: str, model: str) -> dict | None:
    for c in getattr(results, "curves", []) or []:
        if c.name == name and c.split == split and c.model == model:
            return c.data
    return None


def _no_curve_note(ax, missing: list[str]) -> None:
    if missing:
        ax.text(0.98, 0.03, "no curve stored: " + ", ".join(missing), transform=ax.transAxes, ha="right",
                va="bottom", fontsize=8, color=MUTED)


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
    missing: list[str] = field(default_factory=list)  # models without a stored reliability curve

    @classmethod
    def from_results(cls, results, split: str, models: list[str], metric: str = "ece@15") -> "ReliabilityDisplay":
        curves = {m: _curve(results, "reliability", split, m) for m in models}
        bins = {m: d for m, d in curves.items() if d is not None}
        ece = {m: (r.value if (r := _value(results, metric, split, m)) else None) for m in models}
        return cls(split, bins, ece, metric, [m for m, d in curves.items() if d is None])

    @property
    def n_bins(self) -> int | None:
        sizes = {len(d["bin_lower"]) for d in self.bins.values()}
        return sizes.pop() if len(sizes) == 1 else None

    @in_report_style
    def plot(self, ax=None, ax_hist=None, colors: dict[str, str] | None = None):
        if ax is None:
            fig, (ax, ax_hist) = new_figure(2, 1, figsize=(4.6, 5.2), sharex=True,
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
        _no_curve_note(ax, self.missing)
        style_axes(ax)
        ax.legend(loc="upper left")
        if ax_hist is not None:
            ax_hist.set(xlim=(0, 1), xlabel="confidence (max softmax probability)", ylabel="share")
            style_axes(ax_hist)
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
    missing: list[str] = field(default_factory=list)  # models without a stored risk-coverage curve

    @classmethod
    def from_results(cls, results, split: str, models: list[str]) -> "RiskCoverageDisplay":
        stored = {m: _curve(results, "risk_coverage", split, m) for m in models}
        curves = {m: (np.asarray(d["coverage"], float), np.asarray(d["risk"], float))
                  for m, d in stored.items() if d is not None}
        aurc = {m: (r.value if (r := _value(results, "aurc", split, m)) else None) for m in models}
        return cls(split, curves, aurc, missing=[m for m, d in stored.items() if d is None])

    @in_report_style
    def plot(self, ax=None, colors: dict[str, str] | None = None):
        if ax is None:
            _, ax = new_figure(figsize=(4.6, 3.6))
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
        _no_curve_note(ax, self.missing)
        style_axes(ax)
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

    @in_report_style
    def plot(self, ax=None, colors: dict[str, str] | None = None):
        splits = [self.in_split, *self.ood_splits]
        if ax is None:
            _, ax = new_figure(figsize=(max(4.2, 1.6 * len(splits) + 1.5), 3.4))
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
        style_axes(ax)
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

    @in_report_style
    def plot(self, ax=None, colors: dict[str, str] | None = None):
        labels = [f"{r['split']}\n{r['model']}" for r in self.rows]
        if ax is None:
            _, ax = new_figure(figsize=(max(4.4, 0.95 * len(self.rows) + 1.5), 3.4))
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
        style_axes(ax)
        ax.legend(loc="upper left")
        self.ax_, self.figure_ = ax, ax.figure
        return self


@dataclass
class AttackDisplay:
    """Accuracy under attack by recipe for each model, next to its clean accuracy on the same attacked
    examples (1 - skipped / examples of the same records: every recipe attacks one shared list), not
    the whole split's accuracy."""

    split: str
    recipes: list[str]
    under_attack: dict[str, dict[str, float]]  # model -> recipe -> accuracy under attack
    clean: dict[str, float | None]

    @classmethod
    def from_results(cls, results, models: list[str]) -> "AttackDisplay | None":
        under: dict[str, dict[str, float]] = {m: {} for m in models}
        clean: dict[str, float | None] = {m: None for m in models}
        split = None
        for r in results.records:
            parts = r.metric.split(":")
            if r.model in models and len(parts) == 2 and parts[1] == "accuracy_under_attack" and r.value is not None:
                under[r.model][parts[0]] = r.value
                split = split or r.split
                skipped = _value(results, f"{parts[0]}:skipped", r.split, r.model)
                if clean[r.model] is None and skipped is not None and r.n:
                    clean[r.model] = 1.0 - skipped.value / r.n
        recipes = sorted({rc for v in under.values() for rc in v})
        if not recipes:
            return None
        return cls(split, recipes, under, clean)

    @in_report_style
    def plot(self, ax=None, colors: dict[str, str] | None = None):
        if ax is None:
            _, ax = new_figure(figsize=(max(4.2, 1.5 * len(self.recipes) + 2), 3.4))
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
        style_axes(ax)
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

    @in_report_style
    def plot(self, ax=None):
        n = len(self.rows)
        if ax is None:
            _, ax = new_figure(figsize=(5.6, 1.0 + 0.24 * max(n, 1)))
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


@dataclass
class AlignmentHeatmapDisplay:
    """Layers × heads of one alignment diagnostic: the baseline, the twin, and twin − baseline.

    The two models' cells are their stored per-head records (as carried by the comparison rows) and the
    difference is the comparison's Δ; a dot marks heads whose interval of the difference excludes 0.
    The difference uses a diverging colormap centred on 0 (blue: the twin is lower)."""

    metric: str
    split: str
    baseline: np.ndarray  # [layers, heads]
    candidate: np.ndarray
    delta: np.ndarray
    significant: np.ndarray
    names: tuple[str, str] = ("baseline", "twin")
    label: str = ""

    @classmethod
    def from_comparison(cls, rows: list[dict], split: str, metric: str, dims: tuple[int, int],
                        names: tuple[str, str] = ("baseline", "twin")) -> "AlignmentHeatmapDisplay":
        g = A.grid(rows, split, metric, dims)
        return cls(metric, split, g.baseline, g.candidate, g.delta, g.significant, tuple(names), A.label(metric))

    @property
    def delta_limit(self) -> float:
        """The symmetric colour range of the difference: [-limit, +limit] centres 0 on the colormap."""
        finite = np.abs(self.delta[np.isfinite(self.delta)])
        return float(finite.max()) if finite.size and finite.max() > 0 else 1e-12

    @in_report_style
    def plot(self, axes=None):
        n_layers, n_heads = self.baseline.shape
        if axes is None:
            width = min(4.2, max(2.4, 0.26 * n_heads + 1.0))
            _, axes = new_figure(1, 3, figsize=(3 * width + 1.2, min(6.0, max(2.6, 0.3 * n_layers + 1.4))),
                                 layout="constrained")
        a_base, a_cand, a_delta = axes
        both = np.r_[self.baseline.ravel(), self.candidate.ravel()]
        both = both[np.isfinite(both)]
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        colormaps = styled_matplotlib().colormaps
        seq = colormaps["viridis"].with_extremes(bad="#E5E7EB")
        for ax, data, title in ((a_base, self.baseline, self.names[0]), (a_cand, self.candidate, self.names[1])):
            im = ax.imshow(np.ma.masked_invalid(data), cmap=seq, vmin=lo, vmax=hi if hi > lo else lo + 1e-12,
                           aspect="auto", interpolation="nearest")
            ax.set_title(title)
        ax.figure.colorbar(im, ax=[a_base, a_cand], shrink=0.9, label=self.label)
        lim = self.delta_limit
        div = colormaps["RdBu_r"].with_extremes(bad="#E5E7EB")
        imd = a_delta.imshow(np.ma.masked_invalid(self.delta), cmap=div, vmin=-lim, vmax=lim, aspect="auto",
                             interpolation="nearest")
        layers, heads = np.nonzero(self.significant)
        if len(layers):
            a_delta.scatter(heads, layers, s=9, facecolor="white", edgecolor=INK, linewidths=0.6, marker="o")
        marked = "\n(○ interval excludes 0)" if len(layers) else ""
        a_delta.set_title(f"{self.names[1]} − {self.names[0]}{marked}")
        ax.figure.colorbar(imd, ax=a_delta, shrink=0.9, label="Δ")
        step_h = max(1, int(np.ceil(n_heads / 12)))
        step_l = max(1, int(np.ceil(n_layers / 12)))
        for ax in axes:
            ax.set_xticks(np.arange(0, n_heads, step_h))
            ax.set_yticks(np.arange(0, n_layers, step_l))
            ax.set_xlabel("head")
            ax.grid(False)
        a_base.set_ylabel("layer")
        a_base.figure.suptitle(f"{self.label} per head · {self.split}", fontweight="bold", fontsize=10.5)
        self.axes_, self.figure_ = list(axes), a_base.figure
        return self


@dataclass
class AlignmentLayersDisplay:
    """One alignment diagnostic per layer: each model's value (top) and twin − baseline with its
    interval (bottom), from the per-layer comparison rows."""

    metric: str
    split: str
    values: dict[str, np.ndarray]  # model -> per-layer value, baseline first
    deltas: dict[str, np.ndarray]  # twin -> per-layer Δ
    ci_low: dict[str, np.ndarray]
    ci_high: dict[str, np.ndarray]
    label: str = ""
    confidence: float = 0.95

    @classmethod
    def from_comparisons(cls, comparisons: list[tuple[str, list[dict]]], split: str, metric: str, n_layers: int,
                         baseline: str = "baseline", confidence: float = 0.95) -> "AlignmentLayersDisplay":
        """`comparisons`: (twin name, comparison rows) per twin; the baseline's values come from the first."""
        values, deltas, lows, highs = {}, {}, {}, {}
        for name, rows in comparisons:
            g = A.grid(rows, split, metric, (n_layers,))
            values.setdefault(baseline, g.baseline)
            values[name], deltas[name], lows[name], highs[name] = g.candidate, g.delta, g.ci_low, g.ci_high
        return cls(metric, split, values, deltas, lows, highs, A.label(metric), confidence)

    @in_report_style
    def plot(self, ax=None, ax_delta=None, colors: dict[str, str] | None = None):
        if ax is None:
            _, (ax, ax_delta) = new_figure(2, 1, figsize=(4.8, 4.6), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 2], "hspace": 0.1})
        colors = colors or model_colors(list(self.values))
        n = len(next(iter(self.values.values()), []))
        x = np.arange(n)
        for m, v in self.values.items():
            ok = np.isfinite(v)
            ax.plot(x[ok], v[ok], marker="o", ms=4, lw=1.8, color=colors.get(m, MUTED), label=m)
        ax.set(ylabel=self.label, title=f"{self.label} per layer · {self.split}")
        style_axes(ax)
        ax.legend(loc="best")
        if ax_delta is not None:
            ax_delta.axhline(0, color="#374151", lw=1)
            width = 0.5 / max(len(self.deltas), 1)
            for i, (m, d) in enumerate(self.deltas.items()):
                xs = x + (i - (len(self.deltas) - 1) / 2) * width
                lo, hi = self.ci_low[m], self.ci_high[m]
                has_ci = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(d)
                ax_delta.vlines(xs[has_ci], lo[has_ci], hi[has_ci], color=colors.get(m, MUTED), lw=1.4)
                ax_delta.plot(xs[has_ci], d[has_ci], "o", ms=4, color=colors.get(m, MUTED))
                bare = np.isfinite(d) & ~has_ci
                ax_delta.plot(xs[bare], d[bare], "o", ms=4, mfc="white", color=colors.get(m, MUTED))
            ax_delta.set(xlabel="layer", ylabel=f"Δ (twin − baseline)\n{self.confidence:.0%} CI")
            style_axes(ax_delta)
        else:
            ax.set_xlabel("layer")
        ax.set_xticks(x)
        self.ax_, self.ax_delta_, self.figure_ = ax, ax_delta, ax.figure
        return self


@dataclass
class DoseResponseDisplay:
    """Δ (twin − baseline) with its interval against each twin's λ, one panel per metric (log λ axis).

    The baseline is λ = 0, i.e. the line Δ = 0 in every panel. The K–Q gap panel also prints each twin's
    MMD² as a multiple of the baseline's."""

    lambdas: np.ndarray  # one per twin, in plotting order
    twins: list[str]
    panels: list[dict[str, Any]]  # metric, split, label, delta, ci_low, ci_high, verdict, higher_is_better, ratio
    confidence: float = 0.95

    @classmethod
    def from_comparisons(cls, comparisons: list[tuple[str, float, list[dict]]],
                         metrics: list[tuple[str, str, str]], confidence: float = 0.95) -> "DoseResponseDisplay":
        """`comparisons`: (twin, λ, comparison rows); `metrics`: (metric, split, label) per panel."""
        comparisons = sorted(comparisons, key=lambda c: c[1])
        panels = []
        for metric, split, label in metrics:
            found = [next((r for r in rows if r.metric == metric and r.split == split), None)
                     for _, _, rows in comparisons]
            if not any(f is not None and f.delta is not None for f in found):
                continue

            def col(key, found=found):
                return np.array([np.nan if f is None or getattr(f, key) is None else float(getattr(f, key))
                                 for f in found])

            base, cand = col("baseline"), col("candidate")
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(base > 0, cand / base, np.nan)
            hib = next((f.higher_is_better for f in found if f is not None), None)
            panels.append({"metric": metric, "split": split, "label": label, "delta": col("delta"),
                           "ci_low": col("ci_low"), "ci_high": col("ci_high"), "higher_is_better": hib,
                           "verdict": [f.verdict if f is not None else "n/a" for f in found], "ratio": ratio})
        return cls(np.array([c[1] for c in comparisons], float), [c[0] for c in comparisons], panels, confidence)

    @in_report_style
    def plot(self, axes=None, ratio_for: tuple[str, ...] = ("kq_mmd2",)):
        n = max(len(self.panels), 1)
        ncols = min(3, n)
        nrows = -(-n // ncols)
        if axes is None:
            fig, axes = new_figure(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows + 0.6), squeeze=False,
                                   layout="constrained")
            axes = list(axes.flat)
        x = self.lambdas
        positive = bool(np.all(x > 0))
        self.lines_ = []
        for ax, p in zip(axes, self.panels):
            d, lo, hi = p["delta"], p["ci_low"], p["ci_high"]
            ax.axhline(0, color="#374151", lw=1)
            ok = np.isfinite(d)
            (line,) = ax.plot(x[ok], d[ok], "-", color=GRID if len(x) > 1 else "none", lw=1.4, zorder=1)
            self.lines_.append(line)
            for xi, di, l, h, v in zip(x, d, lo, hi, p["verdict"]):
                if not np.isfinite(di):
                    continue
                c = VERDICT_COLORS.get(v, MUTED) if p["higher_is_better"] is not None else CANDIDATE_COLOR
                if np.isfinite(l) and np.isfinite(h):  # a percentile interval need not contain Δ: draw both ends
                    ax.plot([xi, xi], [l, h], color=c, lw=1.6, solid_capstyle="round")
                    ax.plot([xi], [di], "o", ms=5, color=c)
                else:
                    ax.plot([xi], [di], "o", ms=5, mfc="white", color=c)
            if p["metric"] in ratio_for:
                for xi, di, r in zip(x, d, p["ratio"]):
                    if np.isfinite(di) and np.isfinite(r):
                        ax.annotate(f"{r:.2f}×", (xi, di), xytext=(4, 4), textcoords="offset points", fontsize=7.5,
                                    color=INK)
            if positive:
                ax.set_xscale("log")
                ax.set_xlim(x.min() / 2.5, x.max() * 2.5)
            else:
                ax.set_xscale("symlog", linthresh=float(np.min(x[x > 0])) if np.any(x > 0) else 1.0)
            ax.set_xticks(x, [format(float(v), "g") for v in x])
            ax.minorticks_off()
            arrow = {True: " ↑", False: " ↓"}.get(p["higher_is_better"], "")
            ax.set_title(f"{p['label']}{arrow}", fontsize=9.5)
            style_axes(ax)
        for ax in axes[len(self.panels):]:
            ax.set_visible(False)
        fig = axes[0].figure
        fig.supxlabel("λ of the twin (log scale; the baseline is λ = 0, the line Δ = 0)", fontsize=9)
        fig.supylabel(f"Δ twin − baseline, {self.confidence:.0%} CI", fontsize=9)
        self.axes_, self.figure_ = axes, fig
        return self
