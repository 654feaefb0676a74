"""The Adversarial robustness section: accuracy under each attack recipe and each recipe's headline rows."""

from __future__ import annotations

from aligneval.formatting import fmt
from aligneval.report import displays as D
from aligneval.report.context import comparison_row, metric_label
from aligneval.report.parts import Section, plot_of
from aligneval.report.sections.base import ReportInput, register_section

SUITE = "adversarial"
ATTACK_TABLE_METRICS = ("accuracy_under_attack", "attack_success_rate", "words_removed_pct")


@register_section("attack", order=60, suites=(SUITE,))
def attack(report: ReportInput) -> list[Section]:
    if not report.same_run:
        return []
    twins, multi = report.twins, report.multi
    display = D.AttackDisplay.from_results(report.results, report.pair)
    rows = []
    for t in twins:
        for r in t["records"]:
            parts = r["metric"].split(":")
            # each recipe's headline metrics, by its goal (aligneval.attack.goals): flip-label recipes
            # accuracy under attack and success rate, input reduction the words removable
            if parts[-1] in ATTACK_TABLE_METRICS and len(parts) in (2, 3) and r.get("suite") == SUITE:
                c = comparison_row(r)
                scope = "all sampled" if parts[0] == "all" else "headline"
                rows.append(([t["name"]] if multi else [])
                            + [parts[-2], f"{metric_label(parts[-1])} ({scope})", r["split"], c["baseline"],
                               c["candidate"], f"{c['delta']} {c['ci']}".strip(), c["p"], fmt(r["n"])])
    if display is None and not rows:
        return []
    first = [] if not multi else ["twin"]
    shift = len(first)
    return [Section("attack", "Adversarial robustness",
                    "Accuracy on the same attacked examples before (clean) and after each attack "
                    "recipe; success rate is counted over the examples each model got right first. "
                    "Input reduction deletes words while keeping the prediction: it reports the share "
                    "of words removable, never accuracy.",
                    [plot_of("attack", display, "Accuracy under attack", "accuracy under attack by recipe",
                             colors=report.colors)] if display is not None else [],
                    {"columns": first + ["recipe", "metric", "split", report.baseline,
                                         "twin" if multi else twins[0]["name"], f"Δ [{report.conf_pct} CI]",
                                         "p", "n"],
                     "rows": rows, "numeric": {i + shift for i in (3, 4, 5, 6, 7)}})]
