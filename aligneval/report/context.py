"""The report's content, computed once and rendered twice (HTML and markdown).

Every number shown comes from a results record or a comparison record; this module only selects,
orders and formats them, and renders the plots (Display objects) to PNG bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aligneval.errors import ArtifactError
from aligneval.report import displays as D

METRIC_ORDER = ["accuracy", "macro_f1", "ece@15", "ece@10", "mce@15", "ace@15", "brier", "nll", "aurc",
                "auroc_error", "msp_auroc_ood"]
METRIC_LABELS = {
    "accuracy": "Accuracy", "macro_f1": "Macro-F1", "brier": "Brier score", "nll": "NLL",
    "aurc": "AURC", "auroc_error": "AUROC (error detection)", "msp_auroc_ood": "MSP AUROC (in vs out)",
}
TEXT_LIMIT = 220
VERDICT_SYMBOL = {"better": "▲ better", "worse": "▼ worse", "no-difference": "● no difference", "n/a": "– n/a"}


def metric_label(metric: str) -> str:
    prefix, _, base = metric.rpartition(":")
    fam, _, bins = base.partition("@")
    label = METRIC_LABELS.get(base) or (f"{fam.upper()} ({bins} bins)" if bins else base.replace("_", " "))
    if prefix == "ts":
        return f"{label}, temperature-scaled"
    if prefix == "drop":
        return f"{label}: in→out drop"
    return f"{prefix}: {label}" if prefix else label


def metric_rank(metric: str) -> tuple[int, int, str]:
    prefix, _, base = metric.rpartition(":")
    return (1 if prefix else 0, METRIC_ORDER.index(base) if base in METRIC_ORDER else len(METRIC_ORDER), metric)


def fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    text = f"{float(v):.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text.replace("-", "−")  # no "−0.0000"


def fmt_delta(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    text = f"{float(v):+.{digits}f}"
    return text[1:] if float(text) == 0 else text.replace("-", "−")  # a difference that rounds to 0 has no sign


def fmt_ci(lo: Any, hi: Any, digits: int = 4) -> str:
    if lo is None or hi is None:
        return ""
    return f"[{fmt_delta(lo, digits)}, {fmt_delta(hi, digits)}]"


def fmt_p(p: Any) -> str:
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def truncate(text: Any, limit: int = TEXT_LIMIT) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


@dataclass
class Plot:
    key: str
    title: str
    caption: str
    png: bytes
    alt: str

    @property
    def filename(self) -> str:
        return f"{self.key}.png"


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    plots: list[Plot] = field(default_factory=list)
    table: dict[str, Any] | None = None  # {"columns": [...], "rows": [[...]], "numeric": set(col idx)}
    note: str = ""


def comparison_row(r: dict) -> dict[str, Any]:
    return {
        "metric": r["metric"], "label": metric_label(r["metric"]), "split": r["split"], "suite": r["suite"],
        "baseline": fmt(r["baseline"]), "candidate": fmt(r["candidate"]), "delta": fmt_delta(r["delta"]),
        "ci": fmt_ci(r["ci_low"], r["ci_high"]), "p": fmt_p(r["p_value"]), "verdict": r["verdict"],
        "verdict_text": VERDICT_SYMBOL.get(r["verdict"], r["verdict"]),
        "verdict_symbol": VERDICT_SYMBOL.get(r["verdict"], "– " + r["verdict"]).split(" ", 1)[0],
        "verdict_word": VERDICT_SYMBOL.get(r["verdict"], "– " + r["verdict"]).split(" ", 1)[1], "n": fmt(r["n"]),
        "direction": "↑" if r["higher_is_better"] else ("↓" if r["higher_is_better"] is False else ""),
        "method": r.get("method", ""),
    }


def _dedupe(records: list[dict]) -> list[dict]:
    """One row per (split, metric): suites may record the same metric on the same split (ood + accuracy)."""
    seen, out = set(), []
    for r in records:
        if (r["split"], r["metric"]) not in seen:
            seen.add((r["split"], r["metric"]))
            out.append(r)
    return out


def build_context(comp, *, max_examples: int = 25, plots: bool = True) -> dict[str, Any]:
    from aligneval.compare import model_groups, run_label

    res = comp.results
    doc = getattr(res, "doc", {}) or {}
    data = doc.get("data", {}) or {}
    base_group = model_groups(comp.baseline_results.models or [r.model for r in comp.baseline_results.records])
    cand_group = model_groups(res.models or [r.model for r in res.records])
    base_models = base_group.get(comp.baseline, [comp.baseline])
    cand_models = cand_group.get(comp.candidate, [comp.candidate])
    base_model, cand_model = base_models[0], cand_models[0]
    same_run = comp.baseline_results is res
    pair = [base_model, cand_model]
    labels = pair if same_run and base_model != cand_model else [f"{base_model} (baseline run)", f"{cand_model}"]
    colors = D.model_colors(pair)
    if not same_run:
        colors = D.model_colors(labels)
    roles = {s: (v or {}).get("role", "test") for s, v in data.items()}
    tests = [s for s, r in roles.items() if r == "test"] or sorted({r["split"] for r in comp.records})[:1]
    primary = tests[0] if tests else None
    oods = [s for s, r in roles.items() if r == "ood"]
    settings = comp.settings
    conf_pct = f"{settings.get('confidence', 0.95):.0%}"

    records = sorted(_dedupe(comp.records), key=lambda r: (r["split"] != primary, r["split"], metric_rank(r["metric"])))
    headline = [comparison_row(r) for r in records
                if r["split"] == primary and ":" not in r["metric"] and r["metric"] != "temperature"]
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
        by_split.setdefault(r["split"], []).append(comparison_row(r))

    ctx: dict[str, Any] = {
        "title": f"{comp.candidate} vs {comp.baseline}",
        "baseline": comp.baseline, "candidate": comp.candidate,
        "baseline_models": base_models, "candidate_models": cand_models, "colors": colors,
        "created": doc.get("created", ""), "aligneval_version": doc.get("aligneval_version", ""),
        "run": run_label(res), "baseline_run": None if same_run else run_label(comp.baseline_results),
        "spec": doc.get("spec") or {},
        "settings": settings, "conf_pct": conf_pct, "primary": primary,
        "models": _models_table(comp, base_models, cand_models),
        "data": [{"split": s, "role": (v or {}).get("role", ""), "source": (v or {}).get("source", ""),
                  "size": fmt((v or {}).get("size")), "skipped": fmt((v or {}).get("skipped")),
                  "fingerprint": str((v or {}).get("fingerprint", ""))[:12]} for s, v in data.items()],
        "environment": _environment(doc.get("environment") or {}),
        "run_settings": _run_settings(doc.get("extra") or {}),
        "headline": headline, "counts": counts, "by_split": by_split, "bottom_line": bottom_line,
        "warnings": list(comp.warnings), "sections": [],
        "seeds": any(r.get("seeds") for r in comp.records),
    }
    if not plots:
        return ctx
    sections = ctx["sections"]
    forest_splits = [s for s in [primary, *oods] if s] or sorted(by_split)
    forest = D.ForestDisplay.from_results([r for s in forest_splits for r in records if r["split"] == s
                                           and ":" not in r["metric"]],
                                          confidence=settings.get("confidence", 0.95))
    if forest.rows:
        sections.append(Section("forest", "Differences at a glance",
                                f"Each line is candidate − baseline with its {conf_pct} interval; lower-is-better "
                                "metrics are flipped so that right of zero always means the candidate is better. "
                                "Green: better, vermillion: worse, grey: no significant difference.",
                                [_plot("forest", forest.plot(), "Δ forest plot",
                                       "Differences with confidence intervals, oriented so right is better")]))
    for split_list, key, title, cls, intro in (
        (list(roles) if roles else [primary], "reliability", "Reliability",
         D.ReliabilityDisplay, "Accuracy against confidence in 15 equal-width bins; the diagonal is perfect "
         "calibration, points below it are over-confident. The bars under each diagram show where the "
         "confidences fall."),
        (list(roles) if roles else [primary], "risk_coverage", "Risk–coverage",
         D.RiskCoverageDisplay, "Error rate among the examples kept when abstaining on the least confident ones; "
         "lower curves are better selective classifiers."),
    ):
        plots_ = []
        for s in split_list:
            if s is None:
                continue
            try:
                disp = cls.from_results(res, s, pair) if same_run else _across_runs(cls, comp, s, pair, labels)
            except (ArtifactError, KeyError):
                disp = None
            if disp is None:
                continue
            role = roles.get(s, "")
            plots_.append(_plot(f"{key}_{s}", disp.plot(colors=colors), f"{title} · {s}",
                                f"{title} of {labels[0]} and {labels[1]} on {s}"
                                + (f" ({role} split)" if role and role != s else "")))
        if plots_:
            sections.append(Section(key, title, intro, plots_))
    if primary and oods and same_run:
        ood_plots, ood_rows = [], []
        for metric in ("accuracy", "ece@15"):
            disp = D.OodDisplay.from_results(res, metric, primary, oods, pair)
            if not any(len(v) > 1 for v in disp.values.values()):
                continue
            ood_plots.append(_plot(f"ood_{metric.replace('@', '_')}", disp.plot(colors=colors),
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
    if same_run:
        for metric in ("ece@15", "ece@10", "nll"):
            disp = D.TemperatureDisplay.from_results(res, metric, pair)
            if disp.rows:
                rows = [[r["model"], r["split"], fmt(r["temperature"], 2), fmt(r["before"]), fmt(r["after"]),
                         fmt_delta(r["after"] - r["before"])] for r in disp.rows]
                sections.append(Section("temperature", "Temperature scaling",
                                        "A single temperature T per model, fitted on the dev split (never on the "
                                        f"split it is evaluated on), applied to the stored probabilities: {metric_label(metric)} "
                                        "before and after.",
                                        [_plot("temperature", disp.plot(colors=colors), "Temperature scaling",
                                               f"{metric} before and after temperature scaling")],
                                        {"columns": ["model", "split", "T", "before", "after", "Δ"], "rows": rows,
                                         "numeric": {2, 3, 4, 5}}))
                break
        attack = D.AttackDisplay.from_results(res, pair)
        if attack is not None:
            rows = []
            for r in records:
                parts = r["metric"].split(":")
                if parts[-1] in ("accuracy_under_attack", "attack_success_rate") and len(parts) <= 3:
                    c = comparison_row(r)
                    scope = "all sampled" if parts[0] == "all" else "headline"
                    rows.append([parts[-2], f"{metric_label(parts[-1])} ({scope})", r["split"],
                                 c["baseline"], c["candidate"], f"{c['delta']} {c['ci']}".strip(), c["p"],
                                 fmt(r["n"])])
            sections.append(Section("attack", "Adversarial robustness",
                                    "Accuracy on the same attacked examples before (clean) and after each attack "
                                    "recipe; success rate is counted over the examples each model got right first.",
                                    [_plot("attack", attack.plot(colors=colors), "Accuracy under attack",
                                           "accuracy under attack by recipe")],
                                    {"columns": ["recipe", "metric", "split", comp.baseline, comp.candidate,
                                                 f"Δ [{conf_pct} CI]", "p", "n"], "rows": rows,
                                     "numeric": {3, 4, 5, 6, 7}}))
    if same_run and primary:
        dis = disagreements(res, base_model, cand_model, primary, max_examples)
        if dis is not None:
            ctx["disagreements"] = dis
    ctx["adversarial_examples"] = adversarial_examples(doc.get("examples") or [], pair, max_examples)
    return ctx


def _across_runs(cls, comp, split: str, pair: list[str], labels: list[str]):
    """A two-model display when the baseline lives in another run (--against): one display per run,
    merged under distinct labels. Only for displays keyed by model (reliability, risk-coverage)."""
    a = cls.from_results(comp.baseline_results, split, [pair[0]])
    b = cls.from_results(comp.results, split, [pair[1]])
    field_names = {"bins": "ece", "curves": "aurc"}
    main = "bins" if hasattr(a, "bins") else "curves"
    merged = {labels[0]: getattr(a, main)[pair[0]], labels[1]: getattr(b, main)[pair[1]]}
    side = {labels[0]: getattr(a, field_names[main])[pair[0]], labels[1]: getattr(b, field_names[main])[pair[1]]}
    setattr(b, main, merged)
    setattr(b, field_names[main], side)
    return b


def _plot(key: str, disp, title: str, alt: str) -> Plot:
    return Plot(key, title, alt, D.figure_png(disp), alt)


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


def disagreements(res, model_a: str, model_b: str, split: str, limit: int) -> dict | None:
    """Examples of `split` where the two models predict different labels, most confident first."""
    from aligneval import stats

    try:
        pa, pb = res.predictions(model_a, split), res.predictions(model_b, split)
    except ArtifactError:
        return None
    order = stats.align_ids(pa.ids, pb.ids, split, (model_a, model_b))
    probs_a = np.asarray(pa.probs, float)
    probs_b = np.asarray(pb.probs, float)[order]
    labels = np.asarray(pa.labels)
    pred_a, pred_b = probs_a.argmax(1), probs_b.argmax(1)
    conf_a, conf_b = probs_a.max(1), probs_b.max(1)
    idx = np.flatnonzero(pred_a != pred_b)
    names = _label_names(res, split)

    def lab(i: int) -> str:
        return names[i] if names and 0 <= i < len(names) else str(int(i))

    texts = pa.texts or [None] * len(pa.ids)
    top = idx[np.argsort(-np.maximum(conf_a[idx], conf_b[idx]), kind="stable")][:limit]
    rows = [{"id": str(pa.ids[i]), "text": truncate(texts[i]), "gold": lab(labels[i]),
             "baseline": f"{lab(pred_a[i])} {conf_a[i]:.2f}", "candidate": f"{lab(pred_b[i])} {conf_b[i]:.2f}",
             "baseline_right": bool(pred_a[i] == labels[i]), "candidate_right": bool(pred_b[i] == labels[i])}
            for i in top]
    n = len(labels)
    return {"split": split, "n": fmt(n), "count": fmt(len(idx)), "share": f"{len(idx) / max(n, 1):.1%}",
            "candidate_only": fmt(int(np.sum((pred_b == labels) & (pred_a != labels)))),
            "baseline_only": fmt(int(np.sum((pred_a == labels) & (pred_b != labels)))),
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
