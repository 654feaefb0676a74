"""Several training seeds per model: per-seed values, mean +- sd and the combined seed + test-set
interval, its test-set part from one example bootstrap shared by every seed model of both sides."""

from __future__ import annotations

from typing import Any

import numpy as np

import aligneval.compare.resampling as resampling
import aligneval.compare.stats as stats
from aligneval.compare.bases import direction, key_of
from aligneval.compare.comparison import Comparison
from aligneval.compare.models import seed_of
from aligneval.compare.runs import split_info
from aligneval.errors import DataError


def compare_seeds(comp: Comparison, base_models, cand_models, resamples, seed, confidence, alpha, only,
                   progress=None) -> list[dict]:
    """Several seeds per model: per-seed values, mean +- sd, and the combined interval
    (`stats.seed_example_interval`): seed-level t plus the test-set variance from an example bootstrap
    in which every resample is shared by all seeds of both models. Records without per-example
    predictions get the seed-level t interval alone."""
    base_res, cand_res = comp.baseline_results, comp.results
    vals_a: dict[tuple, dict[str, Any]] = {}
    vals_b: dict[tuple, dict[str, Any]] = {}
    for res, models, vals in ((base_res, base_models, vals_a), (cand_res, cand_models, vals_b)):
        for r in res.records:
            if r.model in models and r.value is not None:
                vals.setdefault(key_of(r), {})[seed_of(r.model)] = r
    keys = [k for k in vals_b if vals_a.get(k) and (only is None or (k[2], k[1]) in only)]
    boot = _seed_bootstrap(comp, keys, vals_a, vals_b, resamples, seed, progress)
    rows = []
    for k in keys:
        per_a, per_b = vals_a[k], vals_b[k]
        va = {sd: float(r.value) for sd, r in per_a.items()}
        vb = {sd: float(r.value) for sd, r in per_b.items()}
        s = stats.seed_summary(va, vb, confidence)
        note = "interval across seeds only (no per-example data for the test-set part)"
        if k in boot:
            iv = stats.seed_example_interval(va, vb, boot[k], confidence)
            note = iv.extra.get("note")
        else:
            iv = s.interval
        any_b = next(iter(per_b.values()))
        hib = direction(any_b)
        rows.append({
            "suite": k[0], "split": k[1], "metric": k[2],
            "baseline_model": ", ".join(sorted({r.model for r in per_a.values()})),
            "candidate_model": ", ".join(sorted({r.model for r in per_b.values()})),
            "baseline": s.baseline_mean, "candidate": s.candidate_mean, "delta": iv.delta,
            "ci_low": iv.ci_low, "ci_high": iv.ci_high, "p_value": iv.p_value, "method": iv.method,
            "verdict": stats.verdict(iv.delta, iv.p_value, hib, alpha, (iv.ci_low, iv.ci_high)),
            "higher_is_better": hib, "range": list(any_b.range),
            "n": int(min(r.n for r in list(per_a.values()) + list(per_b.values()))),
            "basis": "seeds", "temperature": None, "seeds": s.to_dict(), "resamples": iv.resamples,
            "p_floor": bool(iv.extra.get("p_floor", False)),
            "extra": {x: iv.extra[x] for x in ("se_seeds", "se_examples", "df") if x in iv.extra},
            **({"note": note} if note and iv.ci_low is not None else {}),
        })
    return rows


def _seed_bootstrap(comp: Comparison, keys, vals_a, vals_b, resamples: int, seed: int,
                    progress=None) -> dict[tuple, np.ndarray]:
    """Replicates of (mean over candidate seeds - mean over baseline seeds) for every prediction-basis
    key, each replicate one resample of the split's example ids shared by every seed model."""
    out: dict[tuple, np.ndarray] = {}
    by_split: dict[str, list[tuple]] = {}
    for k in keys:
        recs = list(vals_a[k].values()) + list(vals_b[k].values())
        if all(r.basis == "predictions" for r in recs):
            by_split.setdefault(k[1], []).append(k)
    for split, split_keys in by_split.items():
        # every seed model that has all of this split's keys, baseline side first
        members = []
        for which, res, vals in (("a", comp.baseline_results, vals_a), ("b", comp.results, vals_b)):
            seeds = set.intersection(*(set(vals[k]) for k in split_keys))
            members += [(which, res, vals[split_keys[0]][sd].model, sd, vals) for sd in sorted(seeds)]
        if not any(w == "a" for w, *_ in members) or not any(w == "b" for w, *_ in members):
            continue
        first = members[0]
        ref = first[1].predictions(first[2], split)
        labels = np.asarray(ref.labels, np.int64)
        fp_ref = split_info(first[1], split).get("fingerprint")
        stat_sides = []
        for which, res, model, sd, vals in members:
            pred = ref if model == first[2] and res is first[1] else res.predictions(model, split)
            names = (f"'{first[2]}'", f"'{model}'")
            stats.check_fingerprints(split, fp_ref, split_info(res, split).get("fingerprint"), names)
            order = stats.align_ids(ref.ids, pred.ids, split, names)
            if not np.array_equal(labels, np.asarray(pred.labels, np.int64)[order]):
                raise DataError(f"split '{split}': {names[0]} and {names[1]} disagree on gold labels for the same ids")
            probs = np.asarray(pred.probs, float)[order]
            ranked: dict = {}
            stat_sides.append({k: resampling.statistic(vals[k][sd].metric, probs, labels, vals[k][sd].temperature,
                                                       ranked) for k in split_keys})
        per_model = resampling.bootstrap_sides(stat_sides, len(labels), resamples=resamples, seed=seed, split=split)
        for k in split_keys:
            a = np.mean([v[k] for m, v in zip(members, per_model) if m[0] == "a"], axis=0)
            b = np.mean([v[k] for m, v in zip(members, per_model) if m[0] == "b"], axis=0)
            out[k] = b - a
        if progress is not None:
            progress(split)
    return out
