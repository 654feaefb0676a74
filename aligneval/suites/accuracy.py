"""accuracy suite: accuracy and macro-F1 on every evaluated split."""

from __future__ import annotations

from typing import Any

from aligneval.errors import UsageError
from aligneval.metrics.records import check_metric_names, metric_record
from aligneval.records import SuiteOutput
from aligneval.suites.base import ROLES, SuiteContext, register_suite

DEFAULTS = {"metrics": ["accuracy", "macro_f1"], "roles": ["test", "ood"]}


def check_roles(roles: list[str]) -> None:
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise UsageError(f"roles: {bad} are not among {', '.join(ROLES)}")


def selected_splits(ctx: SuiteContext, roles: list[str]) -> list[str]:
    return [name for name, info in ctx.splits.items() if info.role in roles]


def _validate(settings: dict[str, Any], splits: dict[str, str]) -> None:
    check_metric_names(settings["metrics"])
    check_roles(settings["roles"])


def score_splits(suite: str, ctx: SuiteContext, metrics: list[str], splits: list[str]) -> SuiteOutput:
    """The listed metrics for every model on every listed split."""
    out = SuiteOutput()
    for split in splits:
        for model in ctx.models:
            p = ctx.predictions[(model, split)]
            out.records.extend(metric_record(m, suite, split, model, p.probs, p.labels) for m in metrics)
    return out


@register_suite("accuracy", "accuracy and macro-F1 of the argmax prediction on each test and ood split",
                DEFAULTS, validate=_validate)
def accuracy(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    return score_splits("accuracy", ctx, settings["metrics"], selected_splits(ctx, settings["roles"]))
