"""The report's content, computed once and rendered twice (HTML and markdown).

Every number shown comes from a results record, a stored curve or a comparison record; this module
assembles them: the headline and tables of each twin (`aligneval.report.context`), the comparison-wide
figures (`aligneval.report.overview`), then every registered section whose suites ran, in order
(`aligneval.report.sections`), and the example tables. It never reads a prediction file and never
recomputes a metric.

One report covers one baseline and one or more candidates ("twins", e.g. one per λ of a dose–response
run): each twin gets its own headline, and the figures overlay every model.
"""

from __future__ import annotations

from typing import Any

from aligneval.compare import lambdas, model_groups, run_label
from aligneval.formatting import fmt, truncate
from aligneval.report import displays as D
from aligneval.report.context import SINGLE_SEED, as_comparisons, method_note, seed_count, stats_settings, twin_context
from aligneval.report.examples import adversarial_examples, disagreements
from aligneval.report.overview import dose_section, forest_section
from aligneval.report.parts import Section
from aligneval.report.sections import ReportInput, ordered_sections


def suites_ran(report: ReportInput) -> set[str]:
    """The suites with records in the compared runs (the candidate's, and the baseline's if another)."""
    return {r.suite for res in (report.results, report.first.baseline_results) for r in res.records}


def build_sections(report: ReportInput) -> list[Section]:
    """The comparison-wide figures, then each registered section whose suites ran, in report order."""
    splits = [s for s in [report.primary, *report.oods] if s]
    sections = [s for s in (forest_section(report.twins, splits, report.confidence, report.conf_pct),) if s]
    if report.multi:
        dose = dose_section(report.twins, report.primary, report.confidence, report.conf_pct)
        sections += [dose] if dose is not None else []
    ran = suites_ran(report)
    for info in ordered_sections():
        if not info.suites or ran.intersection(info.suites):
            sections.extend(info.build(report))
    return sections


def build_context(comp, *, max_examples: int = 25, plots: bool = True) -> dict[str, Any]:
    """`comp`: one Comparison, or several (a list or {name: Comparison}) sharing the baseline and run."""
    comps = as_comparisons(comp)
    first = comps[0]
    multi = len(comps) > 1
    res = first.results
    doc = getattr(res, "doc", {}) or {}
    data = doc.get("data", {}) or {}
    base_group = model_groups(first.baseline_results.models or [r.model for r in first.baseline_results.records])
    cand_group = model_groups(res.models or [r.model for r in res.records])
    base_models = base_group.get(first.baseline, [first.baseline])
    cand_models = {c.candidate: cand_group.get(c.candidate, [c.candidate]) for c in comps}
    base_model = base_models[0]
    twin_models = [cand_models[c.candidate][0] for c in comps]
    same_run = first.baseline_results is res
    pair = [base_model, *twin_models]
    labels = pair if same_run and base_model not in twin_models else [f"{base_model} (baseline run)", *twin_models]
    colors = D.model_colors(pair if same_run else labels)
    roles = {s: (v or {}).get("role", "test") for s, v in data.items()}
    all_rows = [r for c in comps for r in c.records]
    tests = [s for s, r in roles.items() if r == "test"] or sorted({r.split for r in all_rows})[:1]
    primary = tests[0] if tests else None
    oods = [s for s, r in roles.items() if r == "ood"]
    st = stats_settings(comps, all_rows)
    conf_pct = f"{st['confidence']:.0%}"
    lams = lambdas(comps) if multi else {first.candidate: None}
    twins = [twin_context(c, primary, lams.get(c.candidate), multi, {*base_models, *cand_models[c.candidate]})
             for c in comps]
    n_seeds = seed_count(first, base_models, cand_models[first.candidate])
    seeds = n_seeds > 1 or any(r.seeds for r in all_rows)
    notes = [SINGLE_SEED] if n_seeds == 1 and not seeds else []
    if any(t["floor"] for t in twins):
        notes.append("“p < x”: no bootstrap resample crossed zero, so p is only known to lie below x, the "
                     "smallest value R resamples can show (2/(R+1), two-sided); “≤” marks an adjusted p "
                     "computed from such a bound.")
    if any(t["families"] for t in twins):
        notes.append("Rows marked exploratory are outside the spec's primary (confirmatory) metrics and are "
                     "adjusted as a separate family: read them as leads, not findings.")
    elif st["two_p"]:
        notes.append("The spec declares no primary metrics, so every tested row is adjusted within one "
                     "exploratory family.")
    if any(r.verdict_reason for r in all_rows):
        notes.append("“no verdict”: the row's sample is below the minimum size for a verdict; the reason is "
                     "printed under it.")
    alignment_lines = list(dict.fromkeys(t["alignment_line"] for t in twins))
    one = twins[0]
    ctx: dict[str, Any] = {
        "title": (f"{len(twins)} twins vs {first.baseline}" if multi else f"{first.candidate} vs {first.baseline}"),
        "multi": multi, "twins": twins,
        "baseline": first.baseline, "candidate": first.candidate if not multi else "twin",
        "baseline_models": base_models, "candidate_models": [m for ms in cand_models.values() for m in ms],
        "colors": colors,
        "created": doc.get("created", ""), "aligneval_version": doc.get("aligneval_version", ""),
        "run": run_label(res), "baseline_run": None if same_run else run_label(first.baseline_results),
        "spec": doc.get("spec") or {},
        "settings": first.settings, "stats": st, "conf_pct": conf_pct, "primary": primary,
        "method_note": method_note(st, seeds, conf_pct, len(first.records)),
        "notes": notes, "alignment_lines": alignment_lines,
        "models": _models_table(first, base_models, [m for ms in cand_models.values() for m in ms]),
        "data": [{"split": s, "role": (v or {}).get("role", ""), "source": (v or {}).get("source", ""),
                  "size": fmt((v or {}).get("size")), "skipped": fmt((v or {}).get("skipped")),
                  "fingerprint": str((v or {}).get("fingerprint", ""))[:12]} for s, v in data.items()],
        "environment": _environment(doc.get("environment") or {}),
        "run_settings": _run_settings(doc.get("extra") or {}),
        # the first twin's tables under their single-comparison names
        "headline": one["headline"], "counts": one["counts"], "by_split": one["by_split"],
        "bottom_line": one["bottom_line"],
        "warnings": [f"{c.candidate}: {w}" if multi else w for c in comps for w in c.warnings],
        "sections": [], "seeds": seeds, "disagreements": [],
    }
    if not plots:
        return ctx
    report = ReportInput(comps, res, twins, first.baseline, base_model, twin_models, pair, labels, colors, roles,
                         primary, oods, same_run, st["confidence"], conf_pct)
    ctx["sections"] = build_sections(report)
    if same_run and primary:
        for t, model in zip(twins, twin_models):
            dis = disagreements(res, base_model, model, primary, max_examples)
            if dis is not None:
                dis["twin"] = t["name"]
                ctx["disagreements"].append(dis)
    ctx["adversarial_examples"] = adversarial_examples(doc.get("examples") or [], pair, max_examples)
    return ctx


def _models_table(comp, base_models, cand_models) -> list[dict]:
    rows = []
    for role, res, models in (("baseline", comp.baseline_results, base_models),
                              ("candidate", comp.results, cand_models)):
        info = (getattr(res, "doc", {}) or {}).get("models", {}) or {}
        for m in models:
            i = info.get(m) or {}
            card = i.get("card") or {}
            card_items = [(str(k), truncate(v if not isinstance(v, (dict, list)) else str(v), 80))
                          for k, v in list(card.items())[:8]] if isinstance(card, dict) else []
            rows.append({"role": role, "name": m, "path": str(i.get("path", "")),
                         "sha": str(i.get("weights_sha256") or "")[:12], "card": card_items})
    return rows


def _environment(env: dict) -> list[tuple[str, str]]:
    items = [(k, str(v)) for k, v in env.items() if not isinstance(v, dict)]
    for k, v in (env.get("packages") or {}).items():
        items.append((k, str(v)))
    return items


def _run_settings(extra: dict) -> list[tuple[str, str]]:
    """What the run chose beyond the spec (e.g. the demo's profile), one level flattened."""
    items = []
    for key, value in extra.items():
        if isinstance(value, dict):
            items += [(f"{key}.{k}", str(v)) for k, v in value.items()]
        else:
            items.append((key, str(value)))
    return items
