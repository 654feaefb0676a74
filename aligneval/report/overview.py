"""The comparison-wide figures that open the report, before the suites' sections: the Δ forest plot of
each twin and, for several twins with a λ, the dose–response panels. They belong to no suite."""

from __future__ import annotations

from aligneval.formatting import fmt_ci, fmt_delta
from aligneval.report import alignment as A
from aligneval.report import displays as D
from aligneval.report.context import in_headline, metric_label, metric_rank
from aligneval.report.parts import Section, plot_of


def forest_section(twins: list[dict], splits: list[str], confidence: float, conf_pct: str) -> Section | None:
    """One forest plot per twin of its non-alignment, unprefixed rows on `splits` (all splits when empty)."""
    multi = len(twins) > 1
    section = None
    for t in twins:
        rows = [r for r in t["records"] if not A.is_alignment(r) and ":" not in r["metric"]
                and (not splits or r["split"] in splits)]
        forest = D.ForestDisplay.from_results(rows, confidence=confidence)
        if not forest.rows:
            continue
        key = f"forest_{t['slug']}" if multi else "forest"
        plot = plot_of(key, forest, f"Δ forest plot · {t['name']}" if multi else "Δ forest plot",
                       f"Differences of {t['name']} with confidence intervals, oriented so right is better")
        if section is None:
            section = Section(
                "forest", "Differences at a glance",
                f"Each line is candidate − baseline with its {conf_pct} interval; lower-is-better metrics are "
                "flipped so that right of zero always means the candidate is better. Green: better, "
                "vermillion: worse, grey: no significant difference.", [])
        section.plots.append(plot)
    return section


def dose_display(twins: list[dict], primary: str | None, confidence: float = 0.95) -> "D.DoseResponseDisplay | None":
    """Δ against λ for each headline metric with a direction, and the K–Q gap (twins without a λ left out)."""
    with_lam = [t for t in twins if t["lam"] is not None]
    if not with_lam:
        return None
    metrics: list[tuple[str, str, str]] = []
    seen = set()
    for t in with_lam:
        for r in t["records"]:
            key = (r["metric"], r["split"])
            if key in seen or not in_headline(r, primary, t["align_split"]):
                continue
            if r.get("higher_is_better") is not None or r["metric"] == A.GAP:
                seen.add(key)
                metrics.append((r["metric"], r["split"], metric_label(r["metric"])))
    metrics.sort(key=lambda m: (m[0] == A.GAP, metric_rank(m[0])))
    disp = D.DoseResponseDisplay.from_comparisons([(t["name"], t["lam"], t["records"]) for t in with_lam], metrics,
                                                  confidence)
    return disp if disp.panels else None


def dose_section(twins: list[dict], primary: str | None, confidence: float, conf_pct: str) -> Section | None:
    disp = dose_display(twins, primary, confidence)
    if disp is None:
        return None
    columns = ["metric", "split", *[f"λ = {format(float(x), 'g')}" for x in disp.lambdas]]
    rows = []
    for p in disp.panels:
        cells = [f"{fmt_delta(d)} {fmt_ci(lo, hi)}".strip() for d, lo, hi in zip(p["delta"], p["ci_low"], p["ci_high"])]
        rows.append([metric_label(p["metric"]), p["split"], *cells])
    skipped = [t["name"] for t in twins if t["lam"] is None]
    return Section(
        "dose", "Dose–response: Δ against λ",
        f"One panel per metric: each twin's difference from the baseline (Δ = twin − baseline, {conf_pct} "
        "interval) against the λ it was trained with, on a log axis. The baseline is λ = 0: the line Δ = 0. "
        "Colours are the verdicts (green better, vermillion worse, grey no significant difference); the K–Q "
        "MMD² panel (blue: a diagnostic without a better direction) prints each twin's gap as a multiple of the "
        "baseline's.",
        [plot_of("dose_response", disp, "Dose–response", "each metric's difference against lambda")],
        {"columns": columns, "rows": rows, "numeric": set(range(2, len(columns)))},
        lines=[f"Not on the λ axis (no λ in their card or name): {', '.join(skipped)}."] if skipped else [])


