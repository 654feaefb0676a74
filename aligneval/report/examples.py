"""The report's example tables, as data (never markup): the examples two models disagree on, from the
accuracy suite's stored table, and the attacked examples with their original and perturbed text."""

from __future__ import annotations

from typing import Any

from aligneval.compare import split_info
from aligneval.formatting import fmt, truncate


def _label_names(res, split: str) -> list[str] | None:
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
