"""Comparison rows as the report shows them: labels, order, display strings, and one twin's tables.

Every number shown comes from a comparison record; this module only selects, orders and formats them.
A metric's label and place come from the metric itself (`aligneval.metrics`), the alignment
diagnostics' from `aligneval.report.alignment`. The whole report is assembled in
`aligneval.report.build`, its sections in `aligneval.report.sections`.
"""

from __future__ import annotations

import re
from typing import Any

from aligneval.compare import ComparisonRow
from aligneval.formatting import fmt, fmt_ci, fmt_delta, fmt_p, fmt_ratio
from aligneval.metrics import UNRANKED, find_metric
from aligneval.report import alignment as A

VERDICT_SYMBOL = {"better": "▲ better", "worse": "▼ worse", "no-difference": "● no difference", "n/a": "– n/a",
                  "insufficient": "– no verdict", "no-verdict": "– no verdict"}
ADJUST_SHORT = {"holm": "Holm", "bh": "BH"}
ADJUST_LONG = {"holm": "Holm step-down", "bh": "Benjamini–Hochberg", "none": "none (each p-value on its own)"}
SINGLE_SEED = "single seed: the interval covers test-set sampling only"


def metric_label(metric: str) -> str:
    """`ts:ece@15` -> "ECE (15 bins), temperature-scaled": the metric's own label, else one made from the name."""
    prefix, _, base = metric.rpartition(":")
    if A.parse(base)[0] in A.FAMILIES:
        label = A.label(base)
    else:
        fam, _, bins = base.partition("@")
        known = find_metric(base)
        label = (known.label if known is not None and known.label else
                 f"{fam.upper()} ({bins} bins)" if bins else base.replace("_", " "))
    if prefix == "ts":
        return f"{label}, temperature-scaled"
    if prefix == "drop":
        return f"{label}: in→out drop"
    return f"{prefix}: {label}" if prefix else label


def metric_rank(metric: str) -> tuple[int, float, str]:
    """Sort key of the report's tables: unprefixed first, then each metric's declared `order`, then the name."""
    prefix, _, base = metric.rpartition(":")
    family = A.parse(base)[0] if A.parse(base)[1] is not None else base
    if family in A.ORDER:
        order = A.ORDER[family]
    else:
        known = find_metric(family)
        order = known.order if known is not None else UNRANKED
    return (1 if prefix else 0, order, metric)


def _two_p(r: ComparisonRow) -> bool:
    """Raw and adjusted p differ in meaning for this row (an adjustment was applied)."""
    return r.p_value_raw is not None and r.adjust not in (None, "none")


def comparison_row(r: ComparisonRow, families: bool = True) -> dict[str, Any]:
    """One comparison row as display strings (every number formatted by aligneval.formatting).
    `families`: the comparison has a primary family, so "exploratory" is worth saying on a row."""
    floor, two = bool(r.p_floor), _two_p(r)
    verdict = r.verdict
    text = VERDICT_SYMBOL.get(verdict, "– " + verdict)
    return {
        "metric": r.metric, "label": metric_label(r.metric), "split": r.split, "suite": r.suite,
        "baseline": fmt(r.baseline), "candidate": fmt(r.candidate), "delta": fmt_delta(r.delta),
        "ci": fmt_ci(r.ci_low, r.ci_high),
        "p": fmt_p(r.p_value, floor=floor and not two, bound=floor and two),
        "p_raw": fmt_p(r.p_value_raw, floor=floor) if two else "",
        "verdict": verdict, "verdict_text": VERDICT_SYMBOL.get(verdict, verdict),
        "verdict_symbol": text.split(" ", 1)[0], "verdict_word": text.split(" ", 1)[1],
        "reason": str(r.verdict_reason or ""), "exploratory": families and r.family == "exploratory", "n": fmt(r.n),
        "direction": "↑" if r.higher_is_better else ("↓" if r.higher_is_better is False else ""),
        "method": r.method,
    }


def _dedupe(records: list[ComparisonRow]) -> list[ComparisonRow]:
    """One row per (split, metric): suites may record the same metric on the same split (ood + accuracy)."""
    seen, out = set(), []
    for r in records:
        if (r.split, r.metric) not in seen:
            seen.add((r.split, r.metric))
            out.append(r)
    return out


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def as_comparisons(comp) -> list:
    """A Comparison, a list of them or a {name: Comparison} dict -> a non-empty list, rows typed."""
    comps = list(comp.values()) if isinstance(comp, dict) else list(comp) if isinstance(comp, (list, tuple)) \
        else [comp]
    if not comps:
        raise ValueError("no comparison to report")
    return [c.with_typed_rows() for c in comps]


# ----------------------------------------------------------------------------------------------
# statistics settings, read defensively (older and newer comparison.json files differ)


def stats_settings(comps: list, rows: list[ComparisonRow]) -> dict[str, Any]:
    s = comps[0].settings or {}
    adjust = (s.get("adjust") or next((r.adjust for r in rows if r.adjust), None)
              or ("holm" if s.get("holm") else "none"))
    return {"confidence": s.get("confidence", 0.95), "resamples": s.get("resamples"), "seed": s.get("seed"),
            "alpha": s.get("alpha", 0.05), "ci": s.get("ci", "percentile bootstrap over example ids (paired)"),
            "accuracy_test": s.get("accuracy_test", "exact McNemar (binomial, two-sided)"),
            "ci_seeds": s.get("ci") if s.get("seeds", 1) != 1 and s.get("ci") else "seed-level t interval",
            "adjust": adjust, "adjust_text": ADJUST_LONG.get(adjust, str(adjust)),
            "min_n": s.get("min_n"), "two_p": any(_two_p(r) for r in rows)}


def seed_count(comp, base_models: list[str], cand_models: list[str]) -> int:
    """Seeds per model: the comparison settings' `seeds` / `n_seeds` when given, else the group sizes."""
    for key in ("seeds", "n_seeds"):
        v = (comp.settings or {}).get(key)
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            return v
        if isinstance(v, (list, tuple)):
            return len(v)
    return min(len(base_models), len(cand_models))


def method_note(st: dict, seeds: bool, conf_pct: str, n_rows: int) -> str:
    interval = (f"interval over seeds ({st['ci_seeds']})" if seeds else
                f"paired bootstrap interval ({fmt(st['resamples'])} resamples, seed {st['seed']})")
    test = "t-test over seeds" if seeds else "exact McNemar for accuracy, bootstrap otherwise"
    adjust = ""
    if st["adjust"] != "none":
        name = ADJUST_SHORT.get(st["adjust"], st["adjust"])
        adjust = (f"; shown raw and {name}-adjusted within each family, and verdicts use the adjusted p"
                  if st["two_p"] else f", {name}-adjusted over all {n_rows} comparisons")
    return (f"Δ = candidate − baseline on the same examples, with a {conf_pct} {interval}. p: {test}{adjust}. "
            f"Verdict at α = {st['alpha']}, using each metric's direction "
            "(↑ higher is better, ↓ lower is better).")


# ----------------------------------------------------------------------------------------------
# one twin (candidate) against the baseline


def in_headline(r: ComparisonRow, primary: str | None, align_split: str | None) -> bool:
    if A.is_alignment(r):
        return A.in_headline(r) and r.split == align_split
    return r.split == primary and ":" not in r.metric and r.metric != "temperature"


def _with_diagnostics(comp, models: set[str]) -> list[str]:
    """Which of `models` have alignment records in the compared runs."""
    runs = [comp.results] if comp.baseline_results is comp.results else [comp.results, comp.baseline_results]
    return sorted({r.model for res in runs for r in res.records if r.suite == A.SUITE and r.model in models})


def twin_context(comp, primary: str | None, lam: float | None, multi: bool, models: set[str] = frozenset()) -> dict:
    """Headline, counts, bottom line, alignment sentence and all-comparisons tables of one comparison.
    `models`: the baseline's and this twin's model names (for saying which of them has diagnostics)."""
    records = sorted(_dedupe(comp.records), key=lambda r: (r.split != primary, r.split, metric_rank(r.metric)))
    align_split = A.split_of(records, primary)
    families = any(r.family == "primary" for r in records)
    headline = []
    for r in records:
        if in_headline(r, primary, align_split):
            row = comparison_row(r, families)
            if r.split != primary:
                row["label"] += f" ({r.split})"
            headline.append(row)
    counts = {v: sum(1 for r in headline if r["verdict"] == v) for v in ("better", "worse", "no-difference")}
    better = [r["label"] for r in headline if r["verdict"] == "better"]
    worse = [r["label"] for r in headline if r["verdict"] == "worse"]
    parts = []
    if better:
        parts.append(f"better on {', '.join(better)}")
    if worse:
        parts.append(f"worse on {', '.join(worse)}")
    rest = counts["no-difference"]
    if parts and rest:
        parts.append(f"no significant difference on the other {rest}")
    if parts:
        bottom_line = f"On {primary}, {comp.candidate} is " + "; ".join(parts) + f" (vs {comp.baseline})."
    elif rest:
        bottom_line = (f"On {primary}, {comp.candidate} is not significantly different from {comp.baseline} "
                       f"on any of the {rest} metrics.")
    else:
        bottom_line = ""
    by_split: dict[str, list] = {}
    for r in records:
        if not A.is_detail(r):
            by_split.setdefault(r.split, []).append(comparison_row(r, families))
    confidence = (comp.settings or {}).get("confidence", 0.95)
    gap = A.overall(records, align_split)  # a ComparisonRow or None
    return {
        "name": comp.candidate, "comp": comp, "lam": lam, "lam_text": "–" if lam is None else format(lam, "g"),
        "slug": slug(comp.candidate), "records": records, "align_split": align_split,
        "headline": headline, "counts": counts, "bottom_line": bottom_line, "by_split": by_split,
        "alignment_line": A.headline_sentence(records, align_split, confidence, comp.candidate if multi else None,
                                              _with_diagnostics(comp, models)),
        "has_alignment": gap is not None,
        "gap_ratio": fmt_ratio(gap.candidate / gap.baseline) if gap and gap.baseline
        and gap.candidate is not None and gap.baseline > 0 else "–",
        "floor": any(r.p_floor for r in records), "families": families,
        "detail_rows": sum(1 for r in records if A.is_detail(r)),
    }
