"""Multiple comparisons: which rows form a family, how their p-values are adjusted, and the verdicts.

A comparison has ~40 rows (10 metrics x 4 splits); calling each "better" at raw p < 0.05 finds
something in most null comparisons. So p-values are adjusted within a family by default:

* `holm`: Holm's step-down correction (controls the family-wise error rate, any dependence);
* `bh`: Benjamini-Hochberg (controls the false discovery rate; valid under positive dependence);
* `none`: raw p-values.

Families: rows the spec declares `primary` (metric names, or `split/metric`) are the confirmatory
family; every other testable row is adjusted within the exploratory family. Without a declaration
every testable row is exploratory. Rows without a p-value or a direction (descriptive values,
diagnostics) and rows below the minimum size are in no family and get no verdict. A metric recorded
twice on one split (e.g. by the `accuracy` and `ood` suites) is one test, counted once.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from aligneval.compare.options import DEFAULT_ADJUST, DEFAULT_MIN_N
from aligneval.compare.stats import verdict
from aligneval.registry import Registry

PRIMARY, EXPLORATORY = "primary", "exploratory"

ADJUSTMENTS: Registry[Callable[[np.ndarray], np.ndarray]] = Registry("p-value adjustment")


@ADJUSTMENTS.register("holm")
def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: max_{j<=i} min(1, (m - j + 1) p_(j)) in sorted order."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


@ADJUSTMENTS.register("bh")
def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values: min_{j>=i} min(1, m p_(j) / j) in sorted order."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = m * p[order] / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


@ADJUSTMENTS.register("none")
def unadjusted(p: np.ndarray) -> np.ndarray:
    return np.asarray(p, float).copy()


def check_method(method: str) -> str:
    """The method name, or a UsageError listing the choices."""
    ADJUSTMENTS.get(method)
    return method


def adjust(p_values: Sequence[float | None], method: str = DEFAULT_ADJUST) -> list[float | None]:
    """Adjusted p-values of one family; None (and NaN) entries stay None and are not counted."""
    fn = ADJUSTMENTS.get(method)
    idx = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    out: list[float | None] = [None] * len(p_values)
    if idx:
        for i, q in zip(idx, fn(np.array([p_values[i] for i in idx], float))):
            out[i] = float(q)
    return out


# ----------------------------------------------------------------------------------------------
# families


def parse_primary(entries: Sequence[str] | None) -> list[tuple[str | None, str]]:
    """`["accuracy", "test/ece@15"]` -> [(None, "accuracy"), ("test", "ece@15")]."""
    out = []
    for e in entries or []:
        split, sep, metric = str(e).rpartition("/")
        out.append((split if sep else None, metric))
    return out


def is_primary(row: dict, primary: list[tuple[str | None, str]]) -> bool:
    return any(row["metric"] == metric and (split is None or row["split"] == split) for split, metric in primary)


def testable(row: dict) -> bool:
    """A row that can carry a verdict: it has a p-value and the metric has a direction."""
    return row.get("p_value_raw") is not None and row.get("higher_is_better") is not None


def apply(rows: list[dict[str, Any]], *, method: str = DEFAULT_ADJUST, alpha: float = 0.05,
          primary: Sequence[str] | None = None, min_n: int = DEFAULT_MIN_N) -> None:
    """Set `p_value_raw`, `p_value` (adjusted), `adjust`, `family`, `verdict` and `verdict_reason` on
    every row, in place. Rows must hold their raw p in `p_value_raw` (or `p_value` on the first call)."""
    check_method(method)
    wanted = parse_primary(primary)
    for r in rows:
        if "p_value_raw" not in r:
            r["p_value_raw"] = r.get("p_value")
        r["p_value"], r["adjust"], r["family"], r["verdict_reason"] = r["p_value_raw"], None, None, None
        n = r.get("n")
        has_test = r["p_value_raw"] is not None or (r.get("ci_low") is not None and r.get("ci_high") is not None)
        if n is not None and n < min_n and has_test and r.get("higher_is_better") is not None \
                and r.get("delta") is not None:
            r["verdict"] = "insufficient"
            what = "attacked examples" if r.get("basis") == "attack" else "examples"
            r["verdict_reason"] = f"n={n} < minimum {min_n} {what}"
            continue
        if testable(r):
            r["family"] = PRIMARY if wanted and is_primary(r, wanted) else EXPLORATORY
    for family in (PRIMARY, EXPLORATORY):
        members = [r for r in rows if r["family"] == family]
        # one test per (split, metric): suites may record the same metric on the same split
        tests: dict[tuple[str, str], list[dict]] = {}
        for r in members:
            tests.setdefault((r["split"], r["metric"]), []).append(r)
        keys = list(tests)
        adjusted = adjust([tests[k][0]["p_value_raw"] for k in keys], method)
        for k, q in zip(keys, adjusted):
            for r in tests[k]:
                r["p_value"], r["adjust"] = q, method
    for r in rows:
        if r["verdict"] == "insufficient" and r["verdict_reason"]:
            continue
        r["verdict"] = verdict(r.get("delta"), r["p_value"], r.get("higher_is_better"), alpha,
                               (r.get("ci_low"), r.get("ci_high")))


def family_tests(rows: list[dict], family: str) -> list[list[dict]]:
    """The rows of one family grouped into tests (one per split and metric), in a stable order."""
    tests: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("family") == family:
            tests.setdefault((r["split"], r["metric"]), []).append(r)
    return list(tests.values())


def decisions(p: np.ndarray, method: str, alpha: float) -> np.ndarray:
    """Which tests of a family are rejected (adjusted p < alpha)."""
    return ADJUSTMENTS.get(method)(p) < alpha


def sensitive(p: np.ndarray, i: int, lo: float, hi: float, method: str, alpha: float) -> bool:
    """Would any decision in the family change if test i's p were anywhere in [lo, hi]? The adjusted
    p-values are monotone in each raw p, so the two ends suffice."""
    base = decisions(p, method, alpha)
    for q in (lo, hi):
        moved = p.copy()
        moved[i] = min(max(q, 0.0), 1.0)
        if not np.array_equal(decisions(moved, method, alpha), base):
            return True
    return False


def critical_p(p: np.ndarray, i: int, method: str, alpha: float, iterations: int = 50) -> float:
    """The largest raw p of test i (below its current value) at which some decision of the family
    differs from now; 0 when none would. Bisection: decisions are monotone in p_i."""
    base = decisions(p, method, alpha)
    moved = p.copy()
    moved[i] = 0.0
    if np.array_equal(decisions(moved, method, alpha), base):
        return 0.0
    lo, hi = 0.0, float(p[i])  # decisions differ at lo, equal base at hi
    for _ in range(iterations):
        mid = (lo + hi) / 2
        moved[i] = mid
        if np.array_equal(decisions(moved, method, alpha), base):
            hi = mid
        else:
            lo = mid
    return lo
