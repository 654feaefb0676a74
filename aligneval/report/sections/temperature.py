"""The Temperature scaling section: each model's fitted T and a metric before and after it."""

from __future__ import annotations

from aligneval.formatting import fmt, fmt_delta
from aligneval.report import displays as D
from aligneval.report.context import metric_label
from aligneval.report.parts import Section, plot_of
from aligneval.report.sections.base import ReportInput, register_section

METRICS = ("ece@15", "ece@10", "nll")  # the first of these the run scaled is shown


@register_section("temperature", order=50, suites=("calibration",))
def temperature(report: ReportInput) -> list[Section]:
    if not report.same_run:
        return []
    for metric in METRICS:
        disp = D.TemperatureDisplay.from_results(report.results, metric, report.pair)
        if not disp.rows:
            continue
        rows = [[r["model"], r["split"], fmt(r["temperature"], 2), fmt(r["before"]), fmt(r["after"]),
                 fmt_delta(r["after"] - r["before"])] for r in disp.rows]
        return [Section("temperature", "Temperature scaling",
                        "A single temperature T per model, fitted on the dev split (never on the "
                        f"split it is evaluated on), applied to the stored probabilities: {metric_label(metric)} "
                        "before and after.",
                        [plot_of("temperature", disp, "Temperature scaling",
                                 f"{metric} before and after temperature scaling", colors=report.colors)],
                        {"columns": ["model", "split", "T", "before", "after", "Δ"], "rows": rows,
                         "numeric": {2, 3, 4, 5}})]
    return []
