"""ood suite: the same metrics on each out-of-domain split, plus the in->out drop per metric.

`drop:<metric>` is oriented so that positive always means "worse out of domain": in minus out for
higher-is-better metrics (accuracy), out minus in for lower-is-better ones (ECE). Its own direction
is therefore always lower-is-better.
"""

from __future__ import annotations

from typing import Any

from aligneval.errors import UsageError
from aligneval.metrics import get_metric
from aligneval.metrics.records import check_metric_names, metric_record
from aligneval.records import Record, SuiteOutput
from aligneval.suites.base import SuiteContext, register_suite

DEFAULTS = {"metrics": ["accuracy", "macro_f1", "ece@15", "ece@10", "brier", "nll"], "in_split": ""}


def in_domain_split(in_split: str, splits: dict[str, str]) -> str:
    """The named test split, or the only one; a UsageError otherwise."""
    tests = [name for name, role in splits.items() if role == "test"]
    if in_split:
        if splits.get(in_split) != "test":
            raise UsageError(f"in_split: '{in_split}' is not a split with role 'test' (those are: {tests})")
        return in_split
    if len(tests) != 1:
        raise UsageError(f"in_split: the spec has {len(tests)} test splits {tests}; name the in-domain one")
    return tests[0]


def _validate(settings: dict[str, Any], splits: dict[str, str]) -> None:
    check_metric_names(settings["metrics"])
    if "ood" not in splits.values():
        raise UsageError("the ood suite needs at least one split with role 'ood'")
    in_domain_split(settings["in_split"], splits)


def drop_record(inside: Record, outside: Record, in_split: str) -> Record:
    metric = get_metric(inside.metric)
    lo, hi = metric.range
    if inside.value is None or outside.value is None:
        value = None
    else:
        value = inside.value - outside.value if metric.higher_is_better else outside.value - inside.value
    span = (lo - hi, hi - lo) if lo is not None and hi is not None else (None, None)
    return Record(suite="ood", split=outside.split, model=outside.model, metric=f"drop:{metric.name}", value=value,
                  n=outside.n, higher_is_better=False, range=span, basis=None,
                  extra={"in_split": in_split, "n_in": inside.n, "in_value": inside.value,
                         "out_value": outside.value, "positive_means": "worse out of domain"})


@register_suite("ood", "accuracy and calibration on each ood split and the in->out drop (positive = worse)",
                DEFAULTS, validate=_validate)
def ood(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    roles = {name: info.role for name, info in ctx.splits.items()}
    in_split = in_domain_split(settings["in_split"], roles)
    out = SuiteOutput()
    for model in ctx.models:
        p_in = ctx.predictions[(model, in_split)]
        inside = {m: metric_record(m, "ood", in_split, model, p_in.probs, p_in.labels) for m in settings["metrics"]}
        for split in ctx.splits_with_role("ood"):
            p = ctx.predictions[(model, split)]
            for m in settings["metrics"]:
                outside = metric_record(m, "ood", split, model, p.probs, p.labels)
                out.records.append(outside)
                out.records.append(drop_record(inside[m], outside, in_split))
    return out
