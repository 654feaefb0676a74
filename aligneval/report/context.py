"""The report's content, computed once and rendered twice (HTML and markdown).

Every number shown comes from a results record, a stored curve or a comparison record; this module only
selects, orders and formats them, and renders the plots (Display objects) to PNG bytes. It never reads
a prediction file and never recomputes a metric.

One report covers one baseline and one or more candidates ("twins", e.g. one per λ of a dose–response
run): each twin gets its own headline, and the figures overlay every model.
"""

from __future__ import annotations

import re
from typing import Any

from aligneval.compare import ComparisonRow
from aligneval.errors import ArtifactError
from aligneval.formatting import TEXT_LIMIT, fmt, fmt_ci, fmt_delta, fmt_p, fmt_ratio, truncate  # noqa: F401
from aligneval.report import alignment as A
from aligneval.report import displays as D
from aligneval.report import dose
from aligneval.report.parts import Plot, Section, plot_of  # noqa: F401 - Plot/Section are part of this API

METRIC_ORDER = ["accuracy", "macro_f1", "ece@15", "ece@10", "mce@15", "ace@15", "brier", "nll", "aurc",
                "auroc_error", "msp_auroc_ood", "kq_mmd2", "kq_probe_acc", "attn_entropy"]
METRIC_LABELS = {
    "accuracy": "Accuracy", "macro_f1": "Macro-F1", "brier": "Brier score", "nll": "NLL",
    "aurc": "AURC", "auroc_error": "AUROC (error detection)", "msp_auroc_ood": "MSP AUROC (in vs out)",
}
VERDICT_SYMBOL = {"better": "▲ better", "worse": "▼ worse", "no-difference": "● no difference", "n/a": "– n/a",
                  "insufficient": "– no verdict", "no-verdict": "– no verdict"}
ADJUST_SHORT = {"holm": "Holm", "bh": "BH"}
ADJUST_LONG = {"holm": "Holm step-down", "bh": "Benjamini–Hochberg", "none": "none (each p-value on its own)"}
ATTACK_TABLE_METRICS = ("accuracy_under_attack", "attack_success_rate", "words_removed_pct")
SINGLE_SEED = "single seed: the interval covers test-set sampling only"


def metric_label(metric: str) -> str:
    prefix, _, base = metric.rpartition(":")
    if A.parse(base)[0] in A.FAMILIES:
        label = A.label(base)
    else:
        fam, _, bins = base.partition("@")
        label = METRIC_LABELS.get(base) or (f"{fam.upper()} ({bins} bins)" if bins else base.replace("_", " "))
    if prefix == "ts":
        return f"{label}, temperature-scaled"
    if prefix == "drop":
        return f"{label}: in→out drop"
    return f"{prefix}: {label}" if prefix else label


def metric_rank(metric: str) -> tuple[int, int, str]:
    prefix, _, base = metric.rpartition(":")
    family = A.parse(base)[0] if A.parse(base)[1] is not None else base
    return (1 if prefix else 0, METRIC_ORDER.index(family) if family in METRIC_ORDER else len(METRIC_ORDER),
            metric)


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


def _dedupe(records: list[dict]) -> list[dict]:
    """One row per (split, metric): suites may record the same metric on the same split (ood + accuracy)."""
    seen, out = set(), []
    for r in records:
        if (r["split"], r["metric"]) not in seen:
            seen.add((r["split"], r["metric"]))
            out.append(r)
    return out


def _slug(text: str) -> str:
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


def _in_headline(r: dict, primary: str | None, align_split: str | None) -> bool:
    if A.is_alignment(r):
        return A.in_headline(r) and r["split"] == align_split
    return r["split"] == primary and ":" not in r["metric"] and r["metric"] != "temperature"


def _with_diagnostics(comp, models: set[str]) -> list[str]:
    """Which of `models` have alignment records in the compared runs."""
    runs = [comp.results] if comp.baseline_results is comp.results else [comp.results, comp.baseline_results]
    return sorted({r.model for res in runs for r in res.records if r.suite == A.SUITE and r.model in models})


def twin_context(comp, primary: str | None, lam: float | None, multi: bool, models: set[str] = frozenset()) -> dict:
    """Headline, counts, bottom line, alignment sentence and all-comparisons tables of one comparison.
    `models`: the baseline's and this twin's model names (for saying which of them has diagnostics)."""
    records = sorted(_dedupe(comp.records), key=lambda r: (r["split"] != primary, r["split"], metric_rank(r["metric"])))
    align_split = A.split_of(records, primary)
    families = any(r.get("family") == "primary" for r in records)
    headline = []
    for r in records:
        if _in_headline(r, primary, align_split):
            row = comparison_row(r, families)
            if r["split"] != primary:
                row["label"] += f" ({r['split']})"
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
            by_split.setdefault(r["split"], []).append(comparison_row(r, families))
    confidence = (comp.settings or {}).get("confidence", 0.95)
    gap = A.overall(records, align_split)
    return {
        "name": comp.candidate, "comp": comp, "lam": lam, "lam_text": "–" if lam is None else format(lam, "g"),
        "slug": _slug(comp.candidate), "records": records, "align_split": align_split,
        "headline": headline, "counts": counts, "bottom_line": bottom_line, "by_split": by_split,
        "alignment_line": A.headline_sentence(records, align_split, confidence, comp.candidate if multi else None,
                                              _with_diagnostics(comp, models)),
        "has_alignment": gap is not None,
        "gap_ratio": fmt_ratio(gap["candidate"] / gap["baseline"]) if gap and gap.get("baseline")
        and gap.get("candidate") is not None and gap["baseline"] > 0 else "–",
        "floor": any(r.get("p_floor") for r in records), "families": families,
        "detail_rows": sum(1 for r in records if A.is_detail(r)),
    }


# ----------------------------------------------------------------------------------------------
# the whole report


def build_context(comp, *, max_examples: int = 25, plots: bool = True) -> dict[str, Any]:
    """`comp`: one Comparison, or several (a list or {name: Comparison}) sharing the baseline and run."""
    from aligneval.compare import model_groups, run_label

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
    tests = [s for s, r in roles.items() if r == "test"] or sorted({r["split"] for r in all_rows})[:1]
    primary = tests[0] if tests else None
    oods = [s for s, r in roles.items() if r == "ood"]
    st = stats_settings(comps, all_rows)
    conf_pct = f"{st['confidence']:.0%}"
    lams = dose.lambdas(comps) if multi else {first.candidate: None}
    twins = [twin_context(c, primary, lams.get(c.candidate), multi, {*base_models, *cand_models[c.candidate]})
             for c in comps]
    n_seeds = seed_count(first, base_models, cand_models[first.candidate])
    seeds = n_seeds > 1 or any(r.get("seeds") for r in all_rows)
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
    if any(r.get("verdict_reason") for r in all_rows):
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
    sections = ctx["sections"]
    forest_splits = [s for s in [primary, *oods] if s]
    for t in twins:
        rows = [r for r in t["records"] if not A.is_alignment(r) and ":" not in r["metric"]
                and (not forest_splits or r["split"] in forest_splits)]
        forest = D.ForestDisplay.from_results(rows, confidence=st["confidence"])
        if forest.rows:
            key = f"forest_{t['slug']}" if multi else "forest"
            plot = plot_of(key, forest.plot(), f"Δ forest plot · {t['name']}" if multi else "Δ forest plot",
                           f"Differences of {t['name']} with confidence intervals, oriented so right is better")
            if sections and sections[-1].key == "forest":
                sections[-1].plots.append(plot)
            else:
                sections.append(Section(
                    "forest", "Differences at a glance",
                    f"Each line is candidate − baseline with its {conf_pct} interval; lower-is-better metrics are "
                    "flipped so that right of zero always means the candidate is better. Green: better, "
                    "vermillion: worse, grey: no significant difference.", [plot]))
    if multi:
        sec = _dose_section(twins, primary, st["confidence"], conf_pct)
        if sec is not None:
            sections.append(sec)
    sections.extend(A.section(twins, res, first.baseline, colors, st["confidence"], conf_pct, base_model,
                              twin_models))
    _curve_sections(sections, res, first, roles, primary, pair, labels, colors, same_run)
    if same_run:
        _model_sections(sections, res, twins, primary, oods, pair, colors, conf_pct, first.baseline)
    if same_run and primary:
        for t, model in zip(twins, twin_models):
            dis = disagreements(res, base_model, model, primary, max_examples)
            if dis is not None:
                dis["twin"] = t["name"]
                ctx["disagreements"].append(dis)
    ctx["adversarial_examples"] = adversarial_examples(doc.get("examples") or [], pair, max_examples)
    return ctx


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
            if key in seen or not _in_headline(r, primary, t["align_split"]):
                continue
            if r.get("higher_is_better") is not None or r["metric"] == A.GAP:
                seen.add(key)
                metrics.append((r["metric"], r["split"], metric_label(r["metric"])))
    metrics.sort(key=lambda m: (m[0] == A.GAP, metric_rank(m[0])))
    disp = D.DoseResponseDisplay.from_comparisons([(t["name"], t["lam"], t["records"]) for t in with_lam], metrics,
                                                  confidence)
    return disp if disp.panels else None


def _dose_section(twins: list[dict], primary: str | None, confidence: float, conf_pct: str) -> Section | None:
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
        [plot_of("dose_response", disp.plot(), "Dose–response", "each metric's difference against lambda")],
        {"columns": columns, "rows": rows, "numeric": set(range(2, len(columns)))},
        lines=[f"Not on the λ axis (no λ in their card or name): {', '.join(skipped)}."] if skipped else [])


# a curve is expected on the splits where the suite storing it recorded its companion metric:
# reliability bins with the calibration suite's ECE (test and ood roles by default, never the dev split
# the temperature is fitted on), risk-coverage with the uncertainty suite's AURC
CURVE_COMPANIONS = {"reliability": ("calibration", "ece@"), "risk_coverage": ("uncertainty", "aurc")}


def _curve_splits(res, key: str) -> set[str]:
    suite, metric = CURVE_COMPANIONS[key]
    return {r.split for r in res.records if r.suite == suite and r.metric.startswith(metric)}


def _curve_sections(sections, res, first, roles, primary, pair, labels, colors, same_run) -> None:
    """Reliability and risk–coverage from the stored curves; a missing curve is said, never derived."""
    split_list = list(roles) if roles else [primary]
    for key, title, cls, intro in (
        ("reliability", "Reliability", D.ReliabilityDisplay,
         "Accuracy against confidence in {bins} equal-width bins (the calibration suite's reliability_bins); the "
         "diagonal is perfect calibration, points below it are over-confident. The bars under each diagram "
         "show where the confidences fall."),
        ("risk_coverage", "Risk–coverage", D.RiskCoverageDisplay,
         "Error rate among the examples kept when abstaining on the least confident ones; lower curves are "
         "better selective classifiers."),
    ):
        plots_, missing, bins = [], [], set()
        scored = _curve_splits(res, key)
        for s in split_list:
            if s is None or s not in scored:  # the suite that stores this curve did not score this split
                continue
            try:
                disp = cls.from_results(res, s, pair) if same_run else _across_runs(cls, first, s, pair, labels)
            except (ArtifactError, KeyError):
                continue
            missing += [f"{m} on {s}" for m in disp.missing]
            if not (disp.bins if key == "reliability" else disp.curves):
                continue
            if key == "reliability" and disp.n_bins:
                bins.add(disp.n_bins)
            role = roles.get(s, "")
            plots_.append(plot_of(f"{key}_{_slug(s)}", disp.plot(colors=colors), f"{title} · {s}",
                                  f"{title} of {', '.join(labels)} on {s}"
                                  + (f" ({role} split)" if role and role != s else "")))
        if plots_ or missing:
            text = intro.format(bins=", ".join(map(str, sorted(bins))) or "the stored")
            lines = [f"No curve stored for {', '.join(missing)} (re-score the run with this aligneval to store it)."] \
                if missing else []
            sections.append(Section(key, title, text, plots_, lines=lines))


def _model_sections(sections, res, twins, primary, oods, pair, colors, conf_pct, baseline) -> None:
    """Sections drawn from every model's records: in vs out of domain, temperature, attacks."""
    multi = len(twins) > 1
    if primary and oods:
        ood_plots, ood_rows = [], []
        for metric in ("accuracy", "ece@15"):
            disp = D.OodDisplay.from_results(res, metric, primary, oods, pair)
            if not any(len(v) > 1 for v in disp.values.values()):
                continue
            ood_plots.append(plot_of(f"ood_{metric.replace('@', '_')}", disp.plot(colors=colors),
                                     f"{metric}: in vs out", f"{metric} on {primary} and on the out-of-domain splits"))
            for m, drops in disp.drops().items():
                for s, d in drops.items():
                    ood_rows.append([metric_label(metric), m, s, fmt(disp.values[m][primary]),
                                     fmt(disp.values[m][s]), fmt_delta(d)])
        if ood_plots:
            sections.append(Section("ood", "In-domain vs out-of-domain",
                                    f"The same metrics on the in-domain test split ({primary}) and on each "
                                    "out-of-domain split; Δ is out − in.", ood_plots,
                                    {"columns": ["metric", "model", "ood split", f"in ({primary})", "out", "Δ out − in"],
                                     "rows": ood_rows, "numeric": {3, 4, 5}}))
    for metric in ("ece@15", "ece@10", "nll"):
        disp = D.TemperatureDisplay.from_results(res, metric, pair)
        if disp.rows:
            rows = [[r["model"], r["split"], fmt(r["temperature"], 2), fmt(r["before"]), fmt(r["after"]),
                     fmt_delta(r["after"] - r["before"])] for r in disp.rows]
            sections.append(Section("temperature", "Temperature scaling",
                                    "A single temperature T per model, fitted on the dev split (never on the "
                                    f"split it is evaluated on), applied to the stored probabilities: {metric_label(metric)} "
                                    "before and after.",
                                    [plot_of("temperature", disp.plot(colors=colors), "Temperature scaling",
                                             f"{metric} before and after temperature scaling")],
                                    {"columns": ["model", "split", "T", "before", "after", "Δ"], "rows": rows,
                                     "numeric": {2, 3, 4, 5}}))
            break
    attack = D.AttackDisplay.from_results(res, pair)
    rows = []
    for t in twins:
        for r in t["records"]:
            parts = r["metric"].split(":")
            # each recipe's headline metrics, by its goal (aligneval.attack.goals): flip-label recipes
            # accuracy under attack and success rate, input reduction the words removable
            if parts[-1] in ATTACK_TABLE_METRICS and len(parts) in (2, 3) and r.get("suite") == "adversarial":
                c = comparison_row(r)
                scope = "all sampled" if parts[0] == "all" else "headline"
                rows.append(([t["name"]] if multi else [])
                            + [parts[-2], f"{metric_label(parts[-1])} ({scope})", r["split"], c["baseline"],
                               c["candidate"], f"{c['delta']} {c['ci']}".strip(), c["p"], fmt(r["n"])])
    if attack is None and not rows:
        return
    first = [] if not multi else ["twin"]
    shift = len(first)
    sections.append(Section("attack", "Adversarial robustness",
                            "Accuracy on the same attacked examples before (clean) and after each attack "
                            "recipe; success rate is counted over the examples each model got right first. "
                            "Input reduction deletes words while keeping the prediction: it reports the share "
                            "of words removable, never accuracy.",
                            [plot_of("attack", attack.plot(colors=colors), "Accuracy under attack",
                                     "accuracy under attack by recipe")] if attack is not None else [],
                            {"columns": first + ["recipe", "metric", "split", baseline,
                                                 "twin" if multi else twins[0]["name"], f"Δ [{conf_pct} CI]",
                                                 "p", "n"],
                             "rows": rows, "numeric": {i + shift for i in (3, 4, 5, 6, 7)}}))


def _across_runs(cls, comp, split: str, pair: list[str], labels: list[str]):
    """A two-model display when the baseline lives in another run (--against): one display per run,
    merged under distinct labels. Only for displays keyed by model (reliability, risk-coverage)."""
    a = cls.from_results(comp.baseline_results, split, [pair[0]])
    b = cls.from_results(comp.results, split, [pair[1]])
    field_names = {"bins": "ece", "curves": "aurc"}
    main = "bins" if hasattr(a, "bins") else "curves"
    merged, side = {}, {}
    for label, disp, model in ((labels[0], a, pair[0]), (labels[1], b, pair[1])):
        if model in getattr(disp, main):
            merged[label] = getattr(disp, main)[model]
            side[label] = getattr(disp, field_names[main]).get(model)
    setattr(b, main, merged)
    setattr(b, field_names[main], side)
    b.missing = [labels[0]] * bool(a.missing) + [labels[1]] * bool(b.missing)
    return b


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


def _label_names(res, split: str) -> list[str] | None:
    from aligneval.compare import split_info

    names = split_info(res, split).get("label_names") or (getattr(res, "doc", {}) or {}).get("label_names")
    return list(names) if names else None


def stored_disagreements(res, model_a: str, model_b: str, split: str) -> dict | None:
    """The accuracy suite's `disagreements` curve of the pair, oriented so that `model_a` is the model."""
    for c in getattr(res, "curves", []) or []:
        if c.name != "disagreements" or c.split != split:
            continue
        data = c.data or {}
        if c.model == model_a and data.get("versus") == model_b:
            return data
        if c.model == model_b and data.get("versus") == model_a:
            flip = {"pred": "pred_versus", "conf": "conf_versus", "pred_versus": "pred", "conf_versus": "conf"}
            return {**data, "versus": model_b, "model_only_right": data.get("versus_only_right"),
                    "versus_only_right": data.get("model_only_right"),
                    "rows": [{flip.get(k, k): v for k, v in row.items()} for row in data.get("rows", [])]}
    return None


def disagreements(res, model_a: str, model_b: str, split: str, limit: int) -> dict | None:
    """Examples of `split` where the two models predict different labels, most confident first, from the
    table the accuracy suite stored (None when the run has none)."""
    data = stored_disagreements(res, model_a, model_b, split)
    if data is None:
        return None
    names = _label_names(res, split)

    def lab(i: Any) -> str:
        return names[i] if names and isinstance(i, int) and 0 <= i < len(names) else str(i)

    rows = [{"id": str(r.get("id", "")), "text": truncate(r.get("text")), "gold": lab(r.get("label")),
             "baseline": f"{lab(r.get('pred'))} {r.get('conf', 0):.2f}",
             "candidate": f"{lab(r.get('pred_versus'))} {r.get('conf_versus', 0):.2f}",
             "baseline_right": r.get("pred") == r.get("label"),
             "candidate_right": r.get("pred_versus") == r.get("label")}
            for r in (data.get("rows") or [])[:limit]]
    n, count = data.get("n") or 0, data.get("count") or 0
    return {"split": split, "n": fmt(n), "count": fmt(count), "share": f"{count / max(n, 1):.1%}",
            "candidate_only": fmt(data.get("versus_only_right")), "baseline_only": fmt(data.get("model_only_right")),
            "shown": len(rows), "rows": rows, "baseline_model": model_a, "candidate_model": model_b}


def adversarial_examples(examples: list[dict], models: list[str], limit: int) -> list[dict]:
    """Rows of attacked examples (original and perturbed text), as data, never markup."""
    rows = []
    for e in examples:
        if not isinstance(e, dict):
            continue
        original = e.get("original", e.get("original_text"))
        perturbed = e.get("perturbed", e.get("perturbed_text"))
        if original is None and perturbed is None:
            continue
        if e.get("model") not in models and e.get("model") is not None:
            continue
        rows.append({"model": str(e.get("model", "")), "recipe": str(e.get("recipe", "")),
                     "result": str(e.get("outcome", e.get("result", ""))), "id": str(e.get("id", "")),
                     "original": truncate(original), "perturbed": truncate(perturbed)})
    return rows[:limit]
