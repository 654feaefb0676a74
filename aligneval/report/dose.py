"""Several aligned twins of one baseline (`aligneval align --lambda 0.01,0.1,1`): which models they are
and the λ each was trained with, so the report can compare every twin and draw Δ against λ.

Naming contract of such a run: `baseline` and `aligned-lam0.01`, `aligned-lam0.1`, ... (λ printed with
`format(lam, "g")`), seeds as `aligned-lam0.1@13`. The λ is read from the model card (`lambda`) and,
for models without a card, from the name.
"""

from __future__ import annotations

import math
import re
from typing import Any

LAMBDA_IN_NAME = re.compile(r"-lam(?P<lam>[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?)$")


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
    match = LAMBDA_IN_NAME.search(group)
    if match:
        try:
            return float(match["lam"])
        except ValueError:
            return None
    return None


def find_twins(results, baseline: str = "baseline") -> list[str]:
    """Every model group other than the baseline's, ordered by λ (groups without a λ last, by name)."""
    from aligneval.compare import model_groups, models_of

    groups = model_groups(models_of(results))
    base = baseline.split("@", 1)[0]
    others = [g for g in groups if g != base and baseline not in groups[g]]

    def key(g: str):
        lam = twin_lambda(results, g, groups[g])
        return (lam is None, lam if lam is not None else 0.0, g)

    return sorted(others, key=key)


def lambdas(comparisons) -> dict[str, float | None]:
    """Candidate name -> λ for each comparison (None when the twin has no λ)."""
    from aligneval.compare import model_groups, models_of

    out = {}
    for c in comparisons:
        groups = model_groups(models_of(c.results))
        out[c.candidate] = twin_lambda(c.results, c.candidate, groups.get(c.candidate, [c.candidate]))
    return out
