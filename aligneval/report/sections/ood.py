"""The In-domain vs out-of-domain section: accuracy and ECE on the test split and each ood split."""

from __future__ import annotations

from aligneval.formatting import fmt, fmt_delta
from aligneval.report import displays as D
from aligneval.report.context import metric_label
from aligneval.report.parts import Section, plot_of
from aligneval.report.sections.base import ReportInput, register_section

METRICS = ("accuracy", "ece@15")


# accuracy and ECE on ood splits are recorded by the ood suite, and by accuracy and calibration on ood roles
@register_section("ood", order=40, suites=("accuracy", "calibration", "ood"))
def ood(report: ReportInput) -> list[Section]:
    res, primary, oods, pair, colors = report.results, report.primary, report.oods, report.pair, report.colors
    if not (report.same_run and primary and oods):
        return []
    ood_plots, ood_rows = [], []
    for metric in METRICS:
        disp = D.OodDisplay.from_results(res, metric, primary, oods, pair)
        if not any(len(v) > 1 for v in disp.values.values()):
            continue
        ood_plots.append(plot_of(f"ood_{metric.replace('@', '_')}", disp, f"{metric}: in vs out",
                                 f"{metric} on {primary} and on the out-of-domain splits", colors=colors))
        for m, drops in disp.drops().items():
            for s, d in drops.items():
                ood_rows.append([metric_label(metric), m, s, fmt(disp.values[m][primary]),
                                 fmt(disp.values[m][s]), fmt_delta(d)])
    if not ood_plots:
        return []
    return [Section("ood", "In-domain vs out-of-domain",
                    f"The same metrics on the in-domain test split ({primary}) and on each "
                    "out-of-domain split; Δ is out − in.", ood_plots,
                    {"columns": ["metric", "model", "ood split", f"in ({primary})", "out", "Δ out − in"],
                     "rows": ood_rows, "numeric": {3, 4, 5}})]
