"""Choose the one example list every model is attacked on (pure: ids, correctness, seed in; ids out).

A seeded permutation of the split is walked in order. Mode "all": its first `num` ids. Mode
"correct-by-all": the shortest prefix holding `num` ids that every model classifies correctly.
Every model is attacked on the whole prefix (`attack_ids`; an example a model gets wrong is
TextAttack's "skipped", one query). The headline figures use the correct-by-all ids
(`headline_ids`, identical for all models); the `all:` figures use the whole prefix, an unbiased
random sample of the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from aligneval.errors import DataError, UsageError

MODES = ("correct-by-all", "all")


@dataclass(frozen=True)
class Selection:
    attack_ids: list[str]
    headline_ids: list[str]
    mode: str
    pool: int  # how many ids the headline could have been drawn from


def choose(ids: Sequence[str], correct: Mapping[str, np.ndarray] | None, num: int | None, seed: int,
           mode: str = "correct-by-all") -> Selection:
    """`correct[model][i]` says whether that model classifies example `ids[i]` correctly."""
    if mode not in MODES:
        raise UsageError(f"examples must be one of {', '.join(MODES)}, not '{mode}'")
    if num is not None and num <= 0:
        raise UsageError(f"num_examples must be positive, not {num}")
    order = np.random.default_rng(seed).permutation(len(ids))
    if mode == "all":
        take = [ids[i] for i in order[: num or len(ids)]]
        return Selection(take, take, mode, len(ids))
    if not correct:
        raise UsageError("examples = \"correct-by-all\" needs predictions of every model")
    ok = np.logical_and.reduce([np.asarray(c, dtype=bool) for c in correct.values()])
    if not ok.any():
        raise DataError("no example is classified correctly by every model; use examples = \"all\"")
    prefix: list[str] = []
    headline: list[str] = []
    for i in order:
        if num is not None and len(headline) >= num:
            break
        prefix.append(ids[i])
        if ok[i]:
            headline.append(ids[i])
    return Selection(prefix, headline, mode, int(ok.sum()))
