"""Paired statistics for "is the candidate better than the baseline on the same examples?".

* Pairing two runs' predictions by example id, refusing splits whose ids or data differ.
* Percentile intervals and bootstrap p-values (the resampling itself: aligneval.compare.resampling).
* Exact McNemar for accuracy (`scipy.stats.binomtest`; b + c = 0 -> p = 1, no difference).
* Several training seeds: per-seed values, mean +- sd, a seed-level t interval, and the combined
  interval (seed variance + test-set variance from the example bootstrap) the comparison reports.
* Multiple comparisons live in aligneval.compare.multiplicity (Holm, Benjamini-Hochberg, families).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats as st

from aligneval.errors import DataError


# ----------------------------------------------------------------------------------------------
# pairing


def align_ids(ids_a: Sequence[str], ids_b: Sequence[str], split: str, names: tuple[str, str]) -> np.ndarray:
    """Index into b that puts its rows in a's order; refuse (DataError) when the id sets differ."""
    a, b = np.asarray(ids_a, dtype=object), np.asarray(ids_b, dtype=object)
    for ids, name in ((a, names[0]), (b, names[1])):
        if len(set(ids.tolist())) != len(ids):
            raise DataError(f"split '{split}': {name} has duplicate example ids; cannot pair")
    if len(a) == len(b) and np.array_equal(a, b):
        return np.arange(len(b))
    sa, sb = set(a.tolist()), set(b.tolist())
    if sa != sb:
        only_a, only_b = sorted(sa - sb), sorted(sb - sa)
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} ids only in {names[0]} (e.g. '{only_a[0]}')")
        if only_b:
            parts.append(f"{len(only_b)} ids only in {names[1]} (e.g. '{only_b[0]}')")
        raise DataError(f"split '{split}': cannot pair {names[0]} with {names[1]}: the example ids differ: "
                        + "; ".join(parts))
    pos = {v: i for i, v in enumerate(b.tolist())}
    return np.fromiter((pos[v] for v in a.tolist()), dtype=np.int64, count=len(a))


def check_fingerprints(split: str, fp_a: str | None, fp_b: str | None, names: tuple[str, str]) -> None:
    if fp_a and fp_b and fp_a != fp_b:
        raise DataError(f"split '{split}': cannot pair {names[0]} with {names[1]}: data fingerprints differ "
                        f"({fp_a[:12]} vs {fp_b[:12]}); the split's data changed between runs")


# ----------------------------------------------------------------------------------------------
# intervals and tests


@dataclass(frozen=True)
class Interval:
    delta: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    resamples: int = 0
    extra: dict = field(default_factory=dict)


def p_floor(resamples: int) -> float:
    """The smallest two-sided bootstrap p-value R resamples can give: 2 / (R + 1)."""
    return 2.0 / (int(resamples) + 1)


def mc_standard_error(p: float, resamples: int) -> float:
    """Monte-Carlo standard error of a two-sided bootstrap p (p = 2q, q a share of R resamples)."""
    return math.sqrt(max(p * (2.0 - p), 0.0) / max(int(resamples), 1))


def percentile_interval(observed: float, deltas: np.ndarray, confidence: float = 0.95,
                        method: str = "paired bootstrap") -> Interval:
    """Percentile CI of the bootstrap deltas and the two-sided bootstrap p-value of 'no difference':
    p = 2 min(P*(d <= 0), P*(d >= 0)) with the (count + 1) / (R + 1) correction, capped at 1.
    `extra["p_floor"]` says no resample crossed zero: p = 2 / (R + 1) is then an upper bound."""
    d = deltas[np.isfinite(deltas)]
    if len(d) == 0:
        return Interval(observed, None, None, None, method, 0)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    r = len(d)
    below, above = int(np.sum(d <= 0)), int(np.sum(d >= 0))
    p = min(1.0, 2 * min((below + 1) / (r + 1), (above + 1) / (r + 1)))
    if np.all(d == 0):
        p = 1.0
    return Interval(observed, float(lo), float(hi), float(p), method, r, {"p_floor": min(below, above) == 0 and p < 1})


@dataclass(frozen=True)
class McNemar:
    b: int  # baseline right, candidate wrong
    c: int  # baseline wrong, candidate right
    p_value: float

    @property
    def no_difference(self) -> bool:
        return self.b + self.c == 0


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact McNemar test on paired correctness: binomial test of b out of b + c at 1/2."""
    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return McNemar(0, 0, 1.0)
    return McNemar(b, c, float(min(1.0, st.binomtest(b, b + c, 0.5).pvalue)))


# ----------------------------------------------------------------------------------------------
# several seeds


@dataclass(frozen=True)
class SeedSummary:
    baseline: dict[str, float]
    candidate: dict[str, float]
    baseline_mean: float
    baseline_sd: float | None
    candidate_mean: float
    candidate_sd: float | None
    interval: Interval

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate,
                "baseline_mean": self.baseline_mean, "baseline_sd": self.baseline_sd,
                "candidate_mean": self.candidate_mean, "candidate_sd": self.candidate_sd,
                "method": self.interval.method}


def _sd(v: np.ndarray) -> float | None:
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def seed_summary(baseline: dict[str, float], candidate: dict[str, float], confidence: float = 0.95) -> SeedSummary:
    """Seed-level comparison: paired t over seeds both models share, else Welch's t over the means."""
    a = np.array(list(baseline.values()), float)
    b = np.array(list(candidate.values()), float)
    delta = float(b.mean() - a.mean())
    shared = sorted(set(baseline) & set(candidate))
    if len(shared) >= 2 and len(shared) == len(baseline) == len(candidate):
        d = np.array([candidate[s] - baseline[s] for s in shared])
        sd = d.std(ddof=1)
        if sd == 0:
            iv = Interval(delta, delta, delta, 1.0 if delta == 0 else 0.0, "paired t over seeds")
        else:
            half = st.t.ppf(0.5 + confidence / 2, len(d) - 1) * sd / math.sqrt(len(d))
            p = float(st.ttest_1samp(d, 0.0).pvalue)
            iv = Interval(delta, delta - half, delta + half, p, "paired t over seeds")
    elif len(a) >= 2 and len(b) >= 2:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        if se == 0:
            iv = Interval(delta, delta, delta, 1.0 if delta == 0 else 0.0, "Welch t over seeds")
        else:
            df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
            half = st.t.ppf(0.5 + confidence / 2, df) * se
            p = float(st.ttest_ind(b, a, equal_var=False).pvalue)
            iv = Interval(delta, delta - half, delta + half, p, "Welch t over seeds")
    else:
        iv = Interval(delta, None, None, None, "too few seeds for an interval")
    return SeedSummary(dict(baseline), dict(candidate), float(a.mean()), _sd(a), float(b.mean()), _sd(b), iv)


def seed_example_interval(baseline: dict[str, float], candidate: dict[str, float], example_deltas: np.ndarray,
                          confidence: float = 0.95) -> Interval:
    """The headline interval when each model has several training seeds: seed variance and test-set
    variance combined.

    Delta = mean over the candidate's seeds - mean over the baseline's (paired by seed when both have
    the same seeds). Its variance has two parts: the spread across seeds (`seed_summary`: paired
    sd^2 / S, or Welch's sum) and the test-set sampling of the seed-averaged difference, the variance of
    `example_deltas` (bootstrap replicates of that difference, one example resample shared by all
    seeds). se = sqrt(se_seed^2 + se_examples^2); the t interval and two-sided p use the
    Welch-Satterthwaite degrees of freedom of the seed part (the bootstrap part counts as known).
    The seed x example interaction enters both parts, which makes the interval slightly conservative.
    When a side has a single seed the seed variance cannot be estimated: the interval is then the
    example bootstrap's percentile interval, and `extra["note"]` says so."""
    s = seed_summary(baseline, candidate, confidence)
    delta = s.interval.delta
    ex = np.asarray(example_deltas, float)
    ex = ex[np.isfinite(ex)]
    se_ex = float(np.std(ex, ddof=1)) if len(ex) > 1 else 0.0
    seed_iv = s.interval
    if seed_iv.ci_low is None:
        iv = percentile_interval(delta, ex, confidence,
                                 "example bootstrap (seed variance not estimable)")
        return Interval(delta, iv.ci_low, iv.ci_high, iv.p_value, iv.method, len(ex),
                        {"note": "one seed on a side: the interval covers test-set sampling only",
                         "p_floor": iv.extra.get("p_floor", False)})
    paired = seed_iv.method.startswith("paired")
    a, b = np.array(list(baseline.values()), float), np.array(list(candidate.values()), float)
    if paired:
        d = np.array([candidate[k] - baseline[k] for k in baseline])
        var_seed, df_seed = float(d.var(ddof=1)) / len(d), float(len(d) - 1)
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        var_seed = float(va + vb)
        df_seed = (var_seed ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))) if var_seed > 0 else math.inf
    var = var_seed + se_ex ** 2
    method = ("paired t over seeds + example bootstrap" if paired else "Welch t over seeds + example bootstrap")
    extra = {"se_seeds": math.sqrt(var_seed), "se_examples": se_ex}
    if var == 0:
        return Interval(delta, delta, delta, 1.0 if delta == 0 else 0.0, method, len(ex), extra)
    df = math.inf if var_seed == 0 else var ** 2 / (var_seed ** 2 / df_seed)
    se = math.sqrt(var)
    q = st.t.ppf(0.5 + confidence / 2, df) if math.isfinite(df) else st.norm.ppf(0.5 + confidence / 2)
    tail = st.t.sf(abs(delta) / se, df) if math.isfinite(df) else st.norm.sf(abs(delta) / se)
    extra["df"] = df if math.isfinite(df) else None
    return Interval(delta, delta - q * se, delta + q * se, float(min(1.0, 2 * tail)), method, len(ex), extra)


def verdict(delta: float | None, p_value: float | None, higher_is_better: bool | None, alpha: float = 0.05,
            ci: tuple[float | None, float | None] = (None, None)) -> str:
    """better / worse / no-difference from the test (p < alpha) and the metric's direction.
    Without a p-value or a direction: "n/a"."""
    if delta is None or higher_is_better is None:
        return "n/a"
    if p_value is None:
        lo, hi = ci
        if lo is None or hi is None:
            return "n/a"
        significant = lo > 0 or hi < 0
    else:
        significant = p_value < alpha
    if not significant or delta == 0:
        return "no-difference"
    return "better" if (delta > 0) == bool(higher_is_better) else "worse"
