"""Computing one comparison (never reading a stored one): a plan in, a `Comparison` of frozen rows out."""

from __future__ import annotations

import aligneval.compare.engines as engines
import aligneval.compare.multiplicity as multiplicity
from aligneval.compare.comparison import Comparison
from aligneval.compare.planning import DEFAULT_RESAMPLES, Plan, plan
from aligneval.compare.refine import Boot, refine
from aligneval.compare.rows import freeze
from aligneval.compare.seeds import compare_seeds
from aligneval.compare.single import compare_single

SINGLE_SEED_NOTE = "single seed: the interval covers test-set sampling only"


def compare(results, baseline: str = "baseline", candidate: str | None = None, *,
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0, adjust: str = multiplicity.DEFAULT_ADJUST,
            holm: bool | None = None, min_n: int = multiplicity.DEFAULT_MIN_N, max_resamples: int | None = None,
            primary: list[str] | None = None, confidence: float = 0.95, alpha: float = 0.05,
            against=None, only: set[tuple[str, str]] | None = None, progress=None) -> Comparison:
    """Compare `candidate` with `baseline` on every record both have.

    `results`: a run folder, results.json or Results. `against`: an older run whose `baseline` model is
    the reference (the candidate comes from `results`). `adjust`: `holm` (default), `bh` or `none`,
    within each family (`primary`: metric names or `split/metric`; default: the spec's `primary`
    declaration recorded in the run). `holm=True` is the old spelling of `adjust="holm"`. `min_n`:
    rows on fewer examples (attacked examples for attacks) get the verdict "insufficient".
    `max_resamples`: cap of the adaptive refinement (default 20,000; at least `resamples`).
    `only`: restrict to {(metric, split)} pairs (the family is then restricted too).
    """
    p = plan(results, baseline, candidate, resamples=resamples, seed=seed, adjust=adjust, holm=holm, min_n=min_n,
             max_resamples=max_resamples, primary=primary, confidence=confidence, alpha=alpha, against=against,
             only=only)
    return run_plan(p, progress)


def run_plan(p: Plan, progress=None) -> Comparison:
    """Compute the comparison a plan describes: rows as working dicts, adjusted and refined, then frozen."""
    s = p.settings
    comp = Comparison(s["baseline"], s["candidate"], [], p.cand_res, p.base_res, dict(s))
    comp.inputs = p.inputs
    only = {tuple(reversed(x.split("/", 1))) for x in s["only"]} if s["only"] is not None else None
    boots: list[Boot] = []
    engines.warm_up(max((r.n or 0 for r in p.cand_res.records), default=0))  # the largest split's records
    if len(p.base_models) > 1 or len(p.cand_models) > 1:
        rows = compare_seeds(comp, p.base_models, p.cand_models, s["resamples"], s["seed"],
                             s["confidence"], s["alpha"], only, progress)
    else:
        rows = compare_single(comp, p.base_models[0], p.cand_models[0], s["resamples"], s["seed"],
                              s["confidence"], s["alpha"], only, progress, boots)
        for r in rows:
            if r.get("ci_low") is not None:
                r["note"] = SINGLE_SEED_NOTE
    refine(rows, boots, adjust=s["adjust"], alpha=s["alpha"], primary=s["primary"], min_n=s["min_n"],
           cap=s["max_resamples"], confidence=s["confidence"])
    comp.records = freeze(rows)
    return comp

