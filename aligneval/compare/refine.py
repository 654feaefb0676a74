"""Adaptive resolution of bootstrap p-values: adjust within families, then draw more resamples only for
the tests whose Monte-Carlo error could still change a decision (bounded by a cap and a budget)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import aligneval.compare.multiplicity as multiplicity
import aligneval.compare.resampling as resampling
import aligneval.compare.stats as stats

REFINE_Z = 2.0  # refine while moving a p by this many Monte-Carlo standard errors could change a decision
REFINE_BUDGET = 1e8  # extra resample x example cells the refinement may spend per comparison


@dataclass
class Boot:
    """The bootstrap replicates behind one or more rows (a metric recorded by two suites shares one),
    and the group that can draw more of them."""

    group: Any  # has .more(keys, extra, stream) -> {key: extra deltas}
    key: Any
    observed: float
    deltas: np.ndarray
    rows: list[dict]
    method: str = "paired bootstrap"

    @property
    def resamples(self) -> int:
        return len(self.deltas)


class SplitGroup:
    """The statistics of one split: extra resamples are drawn once and shared by the rows refined together."""

    def __init__(self, stats_a: dict, stats_b: dict, n: int, seed: int, split: str):
        self.stats_a, self.stats_b, self.n, self.seed, self.split = stats_a, stats_b, n, seed, split

    def more(self, keys, extra: int, stream: int) -> dict:
        boot = resampling.bootstrap_split({k: self.stats_a[k] for k in keys}, {k: self.stats_b[k] for k in keys},
                                          self.n, resamples=extra, seed=self.seed, split=self.split, stream=stream)
        return {k: vb - va for k, (va, vb) in boot.items()}


class MeanGroup:
    """Per-example values of two models (diagnostics): the mean difference's replicates."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int):
        self.x, self.y, self.seed, self.n = x, y, seed, len(x)

    def more(self, keys, extra: int, stream: int) -> dict:
        d = resampling.mean_difference_replicates(self.x, self.y, resamples=extra, seed=self.seed, stream=stream)
        return {k: d for k in keys}


def _target(p: np.ndarray, i: int, boot: Boot, method: str, alpha: float, cap: int) -> int | None:
    """Resamples test i needs before no decision of its family hangs on its Monte-Carlo error, or None
    when none does (or it is at the cap).

    At the floor (no resample crossed zero) the true p may be anywhere below 2/(R+1): if a smaller p
    would change a decision, R jumps to where the floor lies below the p at which it would
    (`critical_p`, with 5% room). Elsewhere, if moving p by REFINE_Z Monte-Carlo standard errors
    would change a decision, R doubles."""
    r = boot.resamples
    if r >= cap:
        return None
    row = boot.rows[0]
    if row.get("p_floor"):
        crit = multiplicity.critical_p(p, i, method, alpha)
        if crit <= 0:
            return None
        return min(cap, max(math.ceil(2 * 1.05 / crit), r + 1))
    se = stats.mc_standard_error(float(p[i]), r)
    if not multiplicity.sensitive(p, i, p[i] - REFINE_Z * se, p[i] + REFINE_Z * se, method, alpha):
        return None
    return min(cap, 2 * r)


def _set_interval(boot: Boot, confidence: float) -> None:
    iv = stats.percentile_interval(boot.observed, boot.deltas, confidence, boot.method)
    for r in boot.rows:
        r["ci_low"], r["ci_high"] = iv.ci_low, iv.ci_high
        r["p_value_raw"] = r["p_value"] = iv.p_value
        r["p_floor"] = bool(iv.extra.get("p_floor", False))
        r["resamples"] = iv.resamples


def refine(rows: list[dict], boots: list[Boot], *, adjust: str, alpha: float, primary, min_n: int, cap: int,
            confidence: float, budget: float | None = None, max_rounds: int = 12) -> None:
    """Adjust within families; then, while some bootstrap p's Monte-Carlo error could change a decision,
    draw more resamples for those tests only (one shared draw per split and round) and adjust again.
    The extra work is bounded by `budget` resample x example cells (default REFINE_BUDGET); tests left
    unsettled by the cap or the budget say so (`p_settled: false`)."""
    for r in rows:
        r.setdefault("p_floor", False)
        r.setdefault("p_value_raw", r.get("p_value"))
    multiplicity.apply(rows, method=adjust, alpha=alpha, primary=primary, min_n=min_n)
    boot_of = {id(r): b for b in boots for r in b.rows}
    left = REFINE_BUDGET if budget is None else budget

    def pending() -> dict[int, tuple[Any, dict[int, tuple[Boot, int]]]]:
        todo: dict[int, tuple[Any, dict[int, tuple[Boot, int]]]] = {}
        for family in (multiplicity.PRIMARY, multiplicity.EXPLORATORY):
            tests = multiplicity.family_tests(rows, family)
            p = np.array([t[0]["p_value_raw"] for t in tests], float)
            for i, test in enumerate(tests):
                b = next((boot_of[id(r)] for r in test if id(r) in boot_of), None)
                t = None if b is None else _target(p, i, b, adjust, alpha, cap)
                if t is not None:
                    todo.setdefault(id(b.group), (b.group, {}))[1][id(b)] = (b, t)
        return todo

    for stream in range(1, max_rounds + 1):
        todo = pending()
        if not todo or left <= 0:
            break
        for group, items in todo.values():
            extra = max(t - b.resamples for b, t in items.values())
            extra = min(extra, int(left // max(group.n, 1)))
            if extra < 1:
                continue
            left -= extra * group.n
            new = group.more([b.key for b, _ in items.values()], extra, stream)
            for b, t in items.values():
                b.deltas = np.concatenate([b.deltas, new[b.key][: t - b.resamples]])
                _set_interval(b, confidence)
        multiplicity.apply(rows, method=adjust, alpha=alpha, primary=primary, min_n=min_n)
    unsettled = {id(b) for _, items in pending().values() for b, _ in items.values()}
    for b in boots:
        for r in b.rows:
            r["p_mc_se"] = stats.mc_standard_error(r["p_value_raw"], b.resamples) if r["p_value_raw"] else None
            if r.get("family") is not None:
                r["p_settled"] = id(b) not in unsettled
