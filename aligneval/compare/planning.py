"""What a comparison depends on, resolved before anything is computed: the runs, the models on each side
and the settings (the key that decides whether a stored comparison.json is fresh)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aligneval.compare.multiplicity as multiplicity
from aligneval.compare.models import model_groups, pick_group
from aligneval.compare.options import DEFAULT_RESAMPLES, MAX_RESAMPLES
from aligneval.compare.runs import declared_primary, input_fingerprints, load, models_of, run_label
from aligneval.errors import UsageError



@dataclass
class Plan:
    """Everything a comparison depends on, resolved without computing anything: the runs, the models
    on each side and the settings (the key that decides whether a stored comparison.json is fresh)."""

    cand_res: Any
    base_res: Any
    base_models: list[str]
    cand_models: list[str]
    settings: dict[str, Any]
    against: bool

    @property
    def inputs(self) -> dict[str, Any]:
        return input_fingerprints(self.cand_res, self.base_res if self.against else None)


def plan(results, baseline: str = "baseline", candidate: str | None = None, *,
         resamples: int = DEFAULT_RESAMPLES, seed: int = 0, adjust: str = multiplicity.DEFAULT_ADJUST,
         holm: bool | None = None, min_n: int = multiplicity.DEFAULT_MIN_N, max_resamples: int | None = None,
         primary: list[str] | None = None, confidence: float = 0.95, alpha: float = 0.05,
         against=None, only: set[tuple[str, str]] | None = None) -> Plan:
    """Check the settings and resolve the models (see `compare`)."""
    if holm:
        adjust = "holm"
    multiplicity.check_method(adjust)
    if resamples < 1:
        raise UsageError("--resamples must be at least 1")
    if min_n < 0:
        raise UsageError("--min-n must be at least 0")
    if not 0 < confidence < 1:
        raise UsageError("confidence must lie strictly between 0 and 1")
    if not 0 < alpha < 1:
        raise UsageError("alpha must lie strictly between 0 and 1")
    cap = max(resamples, MAX_RESAMPLES if max_resamples is None else int(max_resamples))
    cand_res = load(results)
    base_res = load(against) if against is not None else cand_res
    cand_groups = model_groups(models_of(cand_res))
    base_groups = model_groups(models_of(base_res))
    base_models = pick_group(base_groups, baseline, run_label(base_res))
    if candidate is None:
        others = [g for g in cand_groups if against is not None or g != baseline.split("@")[0]]
        if against is not None and len(others) > 1:
            others = [g for g in others if g != baseline.split("@")[0]] or others
        if len(others) != 1:
            raise UsageError(f"pick the candidate with --candidate: models in {run_label(cand_res)} are "
                             f"{', '.join(sorted(cand_groups)) or 'none'}")
        candidate = others[0]
    cand_models = pick_group(cand_groups, candidate, run_label(cand_res))
    if against is None and set(cand_models) & set(base_models):
        raise UsageError(f"baseline and candidate are the same model '{candidate}'")
    if primary is None:
        primary = declared_primary(cand_res)
    n_seeds = min(len(base_models), len(cand_models))
    settings = {"baseline": baseline, "candidate": candidate, "against": run_label(base_res) if against is not None else None,
                "resamples": resamples, "max_resamples": cap, "seed": seed, "adjust": adjust,
                "holm": adjust == "holm", "primary": list(primary) if primary else None, "min_n": min_n,
                "confidence": confidence, "alpha": alpha, "seeds": n_seeds,
                "seed_models": {"baseline": list(base_models), "candidate": list(cand_models)},
                "only": sorted(f"{s}/{m}" for m, s in only) if only is not None else None,
                "ci": "percentile bootstrap over example ids (paired)"
                if n_seeds == 1 else "t over seeds + example bootstrap (combined)",
                "accuracy_test": "exact McNemar (binomial, two-sided)"}
    return Plan(cand_res, base_res, list(base_models), list(cand_models), settings, against is not None)

