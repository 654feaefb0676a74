"""calibration suite: top-label ECE/MCE/ACE (netcal), Brier, NLL, raw and after temperature scaling.

The temperature is fitted per model on the `dev` split only (never in-sample) and applied to every
other split; scaled metrics are recorded as `ts:<metric>` with `temperature` set, and the fitted
value as a `temperature` record on the dev split. Reliability bins are stored as curves.
"""

from __future__ import annotations

from typing import Any

from aligneval.errors import UsageError
from aligneval.metrics import TemperatureScaler, reliability_bins, scale_probs
from aligneval.metrics.records import check_metric_names, metric_record
from aligneval.metrics.temperature import METHODS
from aligneval.records import Curve, Record, SuiteOutput
from aligneval.suites.accuracy import check_roles, selected_splits
from aligneval.suites.base import SuiteContext, register_suite

TEMPERATURE_CHOICES = METHODS + ("none",)
# metrics a temperature can change (argmax-based ones cannot)
SCALABLE = ("ece", "mce", "ace", "brier", "nll")
DEFAULTS = {
    "metrics": ["ece@15", "ece@10", "mce@15", "ace@15", "brier", "nll"],
    "temperature": "bounded",
    "reliability_bins": 15,
    "roles": ["test", "ood"],
}


def _validate(settings: dict[str, Any], splits: dict[str, str]) -> None:
    check_metric_names(settings["metrics"])
    check_roles(settings["roles"])
    if settings["temperature"] not in TEMPERATURE_CHOICES:
        raise UsageError(f"temperature: '{settings['temperature']}' is not one of {', '.join(TEMPERATURE_CHOICES)}")
    if settings["reliability_bins"] < 1:
        raise UsageError("reliability_bins: must be >= 1")
    if settings["temperature"] != "none" and "dev" not in splits.values():
        raise UsageError("temperature: scaling is fitted on a split with role 'dev' (never in-sample) and the spec "
                         "has none; add a dev split or set temperature = \"none\"")


def dev_split(ctx: SuiteContext) -> str:
    devs = ctx.splits_with_role("dev")
    if len(devs) != 1:
        raise UsageError("calibration: temperature scaling needs exactly one split with role 'dev' "
                         f"(found {len(devs)}); set temperature = \"none\" to skip it")
    return devs[0]


def fit_temperature(ctx: SuiteContext, model: str, dev: str, method: str) -> float:
    p = ctx.predictions[(model, dev)]
    return TemperatureScaler(method=method, input="probs").fit(p.probs, p.labels).temperature_


@register_suite("calibration", "top-label ECE/MCE/ACE, Brier and NLL, raw and after temperature scaling "
                "fitted on the dev split; reliability bins", DEFAULTS, validate=_validate)
def calibration(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    out = SuiteOutput()
    method = settings["temperature"]
    dev = dev_split(ctx) if method != "none" else None
    scalable = [m for m in settings["metrics"] if m.split("@")[0] in SCALABLE]
    bins = settings["reliability_bins"]
    for model in ctx.models:
        temperature = None
        if dev is not None:
            temperature = fit_temperature(ctx, model, dev, method)
            out.records.append(Record(
                suite="calibration", split=dev, model=model, metric="temperature", value=temperature,
                n=ctx.predictions[(model, dev)].n, higher_is_better=None, range=(0.0, None), basis=None,
                extra={"method": method, "fitted_on": dev}))
        for split in selected_splits(ctx, settings["roles"]):
            p = ctx.predictions[(model, split)]
            out.records.extend(metric_record(m, "calibration", split, model, p.probs, p.labels)
                               for m in settings["metrics"])
            out.curves.append(Curve("calibration", split, model, "reliability",
                                    {**reliability_bins(p.probs, p.labels, bins), "temperature": None}))
            if temperature is None:
                continue
            scaled = scale_probs(p.probs, temperature)
            out.records.extend(metric_record(m, "calibration", split, model, scaled, p.labels,
                                             temperature=temperature, prefix="ts:") for m in scalable)
            out.curves.append(Curve("calibration", split, model, "ts:reliability",
                                    {**reliability_bins(scaled, p.labels, bins), "temperature": temperature}))
    return out
