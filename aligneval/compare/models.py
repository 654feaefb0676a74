"""Model groups and twins of a run. The names themselves (seeds, `aligned-lam<λ>`) are written and
parsed in `aligneval.twins`; a twin's λ is read from its model card (`lambda`) and, for models without
a card, from its name (`lambda_in_name`).
"""

from __future__ import annotations

import math
from typing import Any

from aligneval.compare.runs import models_of
from aligneval.errors import UsageError
from aligneval.registry import did_you_mean
# the naming contract is aligneval.twins'; its names are part of this module's public surface
from aligneval.twins import (LAMBDA_IN_NAME, SEED_SEPARATOR, TWIN_PREFIX, group_of,  # noqa: F401
                             lambda_in_name, seed_of, twin_name)


def model_groups(models) -> dict[str, list[str]]:
    """{'baseline': ['baseline@13', 'baseline@42'], ...}: seeds group by the part before '@'."""
    groups: dict[str, list[str]] = {}
    for m in models:
        groups.setdefault(group_of(m), []).append(m)
    return groups


def pick_group(groups: dict[str, list[str]], name: str, where: str) -> list[str]:
    """The models of group `name` (or the single model `name`); UsageError naming the choices."""
    if name in groups:
        return groups[name]
    for members in groups.values():
        if name in members:
            return [name]
    raise UsageError(f"no model '{name}' in {where}{did_you_mean(name, list(groups))}; "
                     f"models: {', '.join(sorted(groups)) or 'none'}")


def _card(results, model: str) -> dict[str, Any]:
    info = ((getattr(results, "doc", {}) or {}).get("models") or {}).get(model) or {}
    card = info.get("card") if isinstance(info, dict) else None
    return card if isinstance(card, dict) else {}


def twin_lambda(results, group: str, members: list[str]) -> float | None:
    """The λ of a twin (seed group `group` with models `members`): its card's `lambda`, else its name's."""
    for m in members:
        lam = _card(results, m).get("lambda")
        if isinstance(lam, (int, float)) and not isinstance(lam, bool) and math.isfinite(lam):
            return float(lam)
    return lambda_in_name(group)


def find_twins(results, baseline: str = "baseline") -> list[str]:
    """Every model group other than the baseline's, ordered by λ (groups without a λ last, by name)."""
    groups = model_groups(models_of(results))
    base = group_of(baseline)
    others = [g for g in groups if g != base and baseline not in groups[g]]

    def key(g: str):
        lam = twin_lambda(results, g, groups[g])
        return (lam is None, lam if lam is not None else 0.0, g)

    return sorted(others, key=key)


def lambdas(comparisons) -> dict[str, float | None]:
    """Candidate name -> λ for each comparison (None when the twin has no λ)."""
    out = {}
    for c in comparisons:
        groups = model_groups(models_of(c.results))
        out[c.candidate] = twin_lambda(c.results, c.candidate, groups.get(c.candidate, [c.candidate]))
    return out
