"""The Alignment section: K–Q heatmaps per twin, per-layer curves and the overall and per-layer table.

The first section of the report; its numbers are sorted and named by `aligneval.report.alignment`.
"""

from __future__ import annotations

from aligneval.compare import ComparisonRow
from aligneval.report import displays as D
from aligneval.report.alignment import FAMILIES, HEATMAPS, INTRO, SUITE, is_alignment, label, parse, shape
from aligneval.report.context import comparison_row
from aligneval.report.parts import Section, plot_of
from aligneval.report.sections.base import ReportInput, register_section


def _has(rows: list[ComparisonRow], split: str, family: str, per_head: bool) -> bool:
    for r in rows:
        fam, layer, head = parse(r.metric)
        if r.split == split and fam == family and layer is not None and (head is not None) == per_head:
            return True
    return False


@register_section("alignment", order=10, suites=(SUITE,))
def section(report: ReportInput) -> list[Section]:
    """The Alignment section (heatmaps per twin, per-layer curves, overall and per-layer table), or []
    when no twin has alignment records."""
    twins, results, baseline, colors = report.twins, report.results, report.baseline, report.colors
    confidence, conf_pct = report.confidence, report.conf_pct
    chosen = [(t, m) for t, m in zip(twins, report.twin_models) if any(is_alignment(r) for r in t["records"])]
    if not chosen:
        return []
    split = chosen[0][0]["align_split"]
    multi = len(twins) > 1
    named = {baseline: colors.get(report.base_model, D.BASELINE_COLOR),
             **{t["name"]: colors.get(m, D.CANDIDATE_COLOR) for t, m in chosen}}
    plots = []
    for t, _ in chosen:
        for family in HEATMAPS:
            if not _has(t["records"], split, family, per_head=True):
                continue
            dims = shape(results, split, family, t["records"])
            disp = D.AlignmentHeatmapDisplay.from_comparison(t["records"], split, family, dims, (baseline, t["name"]))
            key = f"alignment_{family}_heads" + (f"_{t['slug']}" if multi else "")
            plots.append(plot_of(key, disp, f"{label(family)} per head · {t['name']}",
                                 f"{label(family)} per layer and head: {baseline}, {t['name']} and the difference",
                                 wide=True))
    for family in FAMILIES:
        if not any(_has(t["records"], split, family, per_head=False) for t, _ in chosen):
            continue
        n_layers = max(shape(results, split, family, t["records"])[0] for t, _ in chosen)
        disp = D.AlignmentLayersDisplay.from_comparisons([(t["name"], t["records"]) for t, _ in chosen], split,
                                                         family, n_layers, baseline, confidence)
        plots.append(plot_of(f"alignment_{family}_layers", disp, f"{label(family)} per layer",
                             f"{label(family)} per layer for {', '.join(disp.values)}, and each difference",
                             colors=named))
    rows = []
    for t, _ in chosen:
        detail = [r for r in t["records"] if r.split == split and is_alignment(r) and parse(r.metric)[2] is None]
        order = list(FAMILIES)
        detail.sort(key=lambda r: (order.index(parse(r.metric)[0]) if parse(r.metric)[0] in order else 99,
                                   -1 if parse(r.metric)[1] is None else parse(r.metric)[1]))
        for r in detail:
            family, layer, _ = parse(r.metric)
            c = comparison_row(r)
            rows.append(([t["name"]] if multi else []) + [FAMILIES.get(family, family), "all" if layer is None
                                                          else str(layer), c["baseline"], c["candidate"],
                                                          f"{c['delta']} {c['ci']}".strip(), c["p"], c["n"]])
    first = ["twin"] if multi else []
    columns = first + ["diagnostic", "layer", baseline, "twin" if multi else chosen[0][0]["name"],
                       f"Δ [{conf_pct} CI]", "p", "n"]
    return [Section("alignment", "Alignment", INTRO.format(split=split, conf=conf_pct), plots,
                    {"columns": columns, "rows": rows, "numeric": {i + len(first) for i in (2, 3, 4, 5, 6)}})]
