"""One model on each side: every prediction-basis record of a split bootstrapped together (one shared
resample of example ids, exact McNemar for accuracy); attack and per-example records through their
basis (aligneval.compare.bases); anything else as point values."""

from __future__ import annotations

import math

import numpy as np

import aligneval.compare.resampling as resampling
import aligneval.compare.stats as stats
from aligneval.compare.bases import BASES, key_of, point_row
from aligneval.compare.comparison import Comparison
from aligneval.compare.refine import Boot, SplitGroup
from aligneval.compare.runs import split_info
from aligneval.errors import DataError
from aligneval.metrics import base_metric_name, scale_probs


def compare_single(comp: Comparison, model_a: str, model_b: str, resamples: int, seed: int, confidence: float,
                    alpha: float, only, progress, boots: list | None = None) -> list[dict]:
    """One model on each side. Bootstrap-p rows are registered in `boots` for adaptive refinement."""
    boots = [] if boots is None else boots
    base_res, cand_res = comp.baseline_results, comp.results
    recs_a = {key_of(r): r for r in base_res.records if r.model == model_a}
    recs_b = {key_of(r): r for r in cand_res.records if r.model == model_b}
    keys = [k for k in recs_b if k in recs_a and (only is None or (k[2], k[1]) in only)]
    missing = sorted(set(recs_b) - set(recs_a))
    if missing:
        comp.warnings.append(f"{len(missing)} candidate records have no baseline counterpart "
                             f"(e.g. {missing[0][2]} [{missing[0][1]}])")
    rows: dict[tuple, dict] = {}
    by_split: dict[str, list[tuple]] = {}
    for k in keys:
        ra, rb = recs_a[k], recs_b[k]
        basis = BASES.get(rb.basis) if ra.basis == rb.basis and rb.basis in BASES else None
        if basis is not None and basis.grouped and ra.value is not None and rb.value is not None:
            by_split.setdefault(k[1], []).append(k)  # the split's shared bootstrap, below
        elif basis is not None and not basis.grouped:
            rows[k] = basis.pair(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha, boots)
        else:
            rows[k] = point_row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis)
    names = (f"baseline '{model_a}'", f"candidate '{model_b}'")
    for split, split_keys in by_split.items():
        stats.check_fingerprints(split, split_info(base_res, split).get("fingerprint"),
                                 split_info(cand_res, split).get("fingerprint"), names)
        pa, pb = base_res.predictions(model_a, split), cand_res.predictions(model_b, split)
        order = stats.align_ids(pa.ids, pb.ids, split, names)
        probs_a = np.asarray(pa.probs, float)
        probs_b = np.asarray(pb.probs, float)[order]
        labels = np.asarray(pa.labels, np.int64)
        if not np.array_equal(labels, np.asarray(pb.labels, np.int64)[order]):
            raise DataError(f"split '{split}': {names[0]} and {names[1]} disagree on gold labels for the same ids")
        # one statistic per distinct (metric, temperatures): suites may record the same metric twice
        sa, sb, stat_of = {}, {}, {}
        ranked_a: dict = {}
        ranked_b: dict = {}
        for k in split_keys:
            ra, rb = recs_a[k], recs_b[k]
            sk = (base_metric_name(rb.metric), ra.temperature, rb.temperature)
            stat_of[k] = sk
            if sk in sa:
                continue
            sa[sk] = resampling.statistic(ra.metric, probs_a, labels, ra.temperature, ranked_a)
            sb[sk] = resampling.statistic(rb.metric, probs_b, labels, rb.temperature, ranked_b)
        full_a, full_b = resampling.observed_all(sa, len(labels)), resampling.observed_all(sb, len(labels))
        obs = {sk: (full_a[sk], full_b[sk]) for sk in sa}
        boot = resampling.bootstrap_split(sa, sb, len(labels), resamples=resamples, seed=seed, split=split)
        group = SplitGroup(sa, sb, len(labels), seed, split)
        shared: dict = {}
        for k in split_keys:
            ra, rb = recs_a[k], recs_b[k]
            sk = stat_of[k]
            va, vb = boot[sk]
            iv = stats.percentile_interval(obs[sk][1] - obs[sk][0], vb - va, confidence)
            p_floor = bool(iv.extra.get("p_floor", False))
            extra = {}
            for side, rec, val in (("baseline", ra, obs[sk][0]), ("candidate", rb, obs[sk][1])):
                if not math.isclose(val, rec.value, rel_tol=1e-6, abs_tol=1e-9):
                    comp.warnings.append(f"{rec.metric} [{split}] of {rec.model}: stored {rec.value:.6g} but "
                                         f"the stored predictions give {val:.6g}")
                    extra[f"{side}_recomputed"] = val
            if base_metric_name(rb.metric) == "accuracy":
                mc = stats.mcnemar(probs_a.argmax(1) == labels, probs_b.argmax(1) == labels) if rb.temperature is None \
                    else stats.mcnemar(scale_probs(probs_a, ra.temperature).argmax(1) == labels,
                                       scale_probs(probs_b, rb.temperature).argmax(1) == labels)
                iv = stats.Interval(iv.delta, iv.ci_low, iv.ci_high, mc.p_value,
                                    "paired bootstrap CI; exact McNemar p", iv.resamples)
                extra.update({"mcnemar_b": mc.b, "mcnemar_c": mc.c})
                p_floor = False  # exact: no resampling floor
            rows[k] = point_row(ra, rb, len(labels), iv, alpha, "predictions", extra)
            rows[k]["resamples"] = iv.resamples
            rows[k]["p_floor"] = p_floor
            if base_metric_name(rb.metric) != "accuracy" and iv.p_value is not None:
                if sk in shared:
                    shared[sk].rows.append(rows[k])
                else:
                    shared[sk] = Boot(group, sk, iv.delta, vb - va, [rows[k]])
                    boots.append(shared[sk])
        if progress is not None:
            progress(split)
    return [rows[k] for k in keys]

