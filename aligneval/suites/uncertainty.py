"""uncertainty suite: selective prediction (AURC, risk-coverage curve), misclassification AUROC, and
MSP AUROC for telling in-domain test examples from each ood split."""

from __future__ import annotations

from typing import Any

import numpy as np

from aligneval.errors import UsageError
from aligneval.metrics import auroc, confidence, get_metric, risk_coverage
from aligneval.metrics.records import check_metric_names, metric_record
from aligneval.records import Curve, Record, SuiteOutput
from aligneval.suites.accuracy import check_roles, selected_splits
from aligneval.suites.base import SuiteContext, register_suite
from aligneval.suites.ood import in_domain_split

DEFAULTS = {"metrics": ["aurc", "auroc_error"], "roles": ["test", "ood"], "msp_auroc_ood": True,
            "in_split": "", "curve_points": 200}


def _validate(settings: dict[str, Any], splits: dict[str, str]) -> None:
    check_metric_names(settings["metrics"])
    check_roles(settings["roles"])
    if settings["curve_points"] < 0:
        raise UsageError("curve_points: must be >= 0 (0 keeps every point)")
    if settings["msp_auroc_ood"] and "ood" in splits.values():
        in_domain_split(settings["in_split"], splits)


def thin(curve: dict[str, list], points: int) -> dict[str, list]:
    """Keep at most `points` evenly spaced points of a curve (always the last); 0 keeps all."""
    n = len(curve["coverage"])
    if points <= 0 or n <= points:
        return curve
    idx = np.unique(np.r_[np.linspace(0, n - 1, points).round().astype(int), n - 1])
    return {k: [v[i] for i in idx] for k, v in curve.items()}


@register_suite("uncertainty", "AURC and risk-coverage curve, AUROC of confidence for misclassification, "
                "MSP AUROC in-domain vs ood", DEFAULTS, validate=_validate)
def uncertainty(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    out = SuiteOutput()
    for split in selected_splits(ctx, settings["roles"]):
        for model in ctx.models:
            p = ctx.predictions[(model, split)]
            out.records.extend(metric_record(m, "uncertainty", split, model, p.probs, p.labels)
                               for m in settings["metrics"])
            curve = risk_coverage(p.probs, p.labels)
            out.curves.append(Curve("uncertainty", split, model, "risk_coverage",
                                    {**thin(curve, settings["curve_points"]), "points_total": len(curve["coverage"])}))
    oods = ctx.splits_with_role("ood")
    if settings["msp_auroc_ood"] and oods:
        roles = {name: info.role for name, info in ctx.splits.items()}
        in_split = in_domain_split(settings["in_split"], roles)
        meta = get_metric("msp_auroc_ood")
        for model in ctx.models:
            conf_in = confidence(ctx.predictions[(model, in_split)].probs)
            for split in oods:
                conf_out = confidence(ctx.predictions[(model, split)].probs)
                value = auroc(np.r_[conf_in, conf_out], np.r_[np.ones(len(conf_in)), np.zeros(len(conf_out))])
                out.records.append(Record(
                    suite="uncertainty", split=split, model=model, metric=meta.name,
                    value=None if np.isnan(value) else value, n=len(conf_in) + len(conf_out),
                    higher_is_better=meta.higher_is_better, range=meta.range, basis=None,
                    extra={"in_split": in_split, "n_in": len(conf_in), "n_out": len(conf_out),
                           "positive": "in-domain"}))
    return out
