"""The names of models: seeds and the twin naming contract, written and parsed here only.

Seeds: `baseline@13`, `baseline@42` form the group `baseline` (the part before '@').
Twins of a λ grid (`aligneval align --lambda 0.01,0.1,1`): `aligned-lam0.01`, `aligned-lam0.1`, ...
(`twin_name`: λ printed with `format(lam, "g")`), seeds as `aligned-lam0.1@13`. `align` writes these
names and the comparison stage reads them, so both import them from this one low-level module.
"""

from __future__ import annotations

import re

SEED_SEPARATOR = "@"
TWIN_PREFIX = "aligned"
LAMBDA_IN_NAME = re.compile(r"-lam(?P<lam>[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?)$")


def group_of(model: str) -> str:
    """`aligned-lam0.1@13` -> `aligned-lam0.1`."""
    return model.split(SEED_SEPARATOR, 1)[0]


def seed_of(model: str) -> str:
    """`baseline@13` -> `13`; a model without a seed is its own seed."""
    return model.split(SEED_SEPARATOR, 1)[1] if SEED_SEPARATOR in model else model


def twin_name(lam: float, grid: bool = True) -> str:
    """The name of the twin trained with λ: `aligned` for a single λ, `aligned-lam<λ>` in a grid."""
    return f"{TWIN_PREFIX}-lam{format(lam, 'g')}" if grid else TWIN_PREFIX


def lambda_in_name(name: str) -> float | None:
    """The λ a twin's name carries (`aligned-lam0.1` -> 0.1), None when it carries none."""
    match = LAMBDA_IN_NAME.search(group_of(name))
    if not match:
        return None
    try:
        return float(match["lam"])
    except ValueError:
        return None
