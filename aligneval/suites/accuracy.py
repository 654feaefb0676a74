"""accuracy suite: accuracy and macro-F1 on every evaluated split, and where two models' predicted
labels differ on the test split (a stored table, so the report never reads prediction files)."""

from __future__ import annotations

from typing import Any

import numpy as np

from aligneval.errors import UsageError
from aligneval.formatting import truncate
from aligneval.metrics.records import check_metric_names, metric_record
from aligneval.records import Curve, SuiteOutput
from aligneval.suites.base import ROLES, Predictions, SuiteContext, register_suite

DEFAULTS = {"metrics": ["accuracy", "macro_f1"], "roles": ["test", "ood"], "disagreements": 25}
STORED_TEXT = 500  # characters of each disagreement's text kept in results.json


def check_roles(roles: list[str]) -> None:
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise UsageError(f"roles: {bad} are not among {', '.join(ROLES)}")


def selected_splits(ctx: SuiteContext, roles: list[str]) -> list[str]:
    return [name for name, info in ctx.splits.items() if info.role in roles]


def _validate(settings: dict[str, Any], splits: dict[str, str]) -> None:
    check_metric_names(settings["metrics"])
    check_roles(settings["roles"])
    if settings["disagreements"] < 0:
        raise UsageError("disagreements: must be >= 0 (0 stores no disagreement table)")


def disagreement_table(a: Predictions, b: Predictions, limit: int) -> dict[str, Any] | None:
    """Where the argmax labels of two models differ on the same examples: the counts, and the `limit`
    disagreements with the highest confidence (the larger of the two). None when the ids differ."""
    pos = {i: k for k, i in enumerate(b.ids)}
    if len(a.ids) != len(b.ids) or len(pos) != len(b.ids) or any(i not in pos for i in a.ids):
        return None
    order = np.fromiter((pos[i] for i in a.ids), dtype=np.int64, count=len(a.ids))
    probs_a, probs_b = np.asarray(a.probs, float), np.asarray(b.probs, float)[order]
    labels = np.asarray(a.labels)
    pred_a, pred_b = probs_a.argmax(1), probs_b.argmax(1)
    conf_a, conf_b = probs_a.max(1), probs_b.max(1)
    idx = np.flatnonzero(pred_a != pred_b)
    top = idx[np.argsort(-np.maximum(conf_a[idx], conf_b[idx]), kind="stable")][:limit]
    rows = [{"id": str(a.ids[i]), "text": truncate(a.texts[i], STORED_TEXT) if a.texts else None,
             "label": int(labels[i]), "pred": int(pred_a[i]), "conf": float(conf_a[i]),
             "pred_versus": int(pred_b[i]), "conf_versus": float(conf_b[i])} for i in top]
    return {"n": len(labels), "count": len(idx), "limit": limit,
            "model_only_right": int(np.sum((pred_a == labels) & (pred_b != labels))),
            "versus_only_right": int(np.sum((pred_b == labels) & (pred_a != labels))), "rows": rows}


def disagreement_curves(ctx: SuiteContext, splits: list[str], limit: int) -> list[Curve]:
    """One `disagreements` curve per pair of models on each test split, stored under the first model
    of the pair with `versus` naming the second. Seeds (`name@13`) are paired within a seed only."""
    models = list(ctx.models)
    curves = []
    for split in splits:
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                if a.partition("@")[2] != b.partition("@")[2]:
                    continue
                table = disagreement_table(ctx.predictions[(a, split)], ctx.predictions[(b, split)], limit)
                if table is not None:
                    curves.append(Curve("accuracy", split, a, "disagreements", {"versus": b, **table}))
    return curves


def score_splits(suite: str, ctx: SuiteContext, metrics: list[str], splits: list[str]) -> SuiteOutput:
    """The listed metrics for every model on every listed split."""
    out = SuiteOutput()
    for split in splits:
        for model in ctx.models:
            p = ctx.predictions[(model, split)]
            out.records.extend(metric_record(m, suite, split, model, p.probs, p.labels) for m in metrics)
    return out


@register_suite("accuracy", "accuracy and macro-F1 of the argmax prediction on each test and ood split; "
                "where each pair of models disagrees on the test split",
                DEFAULTS, validate=_validate)
def accuracy(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    splits = selected_splits(ctx, settings["roles"])
    out = score_splits("accuracy", ctx, settings["metrics"], splits)
    if settings["disagreements"]:
        tests = [s for s in splits if ctx.splits[s].role == "test"]
        out.curves.extend(disagreement_curves(ctx, tests, settings["disagreements"]))
    return out
