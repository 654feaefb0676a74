"""Candidate vs baseline on the same examples: one comparison record per (suite, split, metric).

Reads only files (results.json, predictions parquet, attack logs). Prediction-basis records are
bootstrapped by resampling example ids (aligneval.stats); accuracy also gets the exact McNemar test;
several seeds (`baseline@13`, ...) get a seed-level t interval; records that cannot be recomputed per
example are reported as point values without an interval.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aligneval import resampling, stats
from aligneval.errors import ArtifactError, DataError, UsageError

COMPARISON_VERSION = "1.0"


# ----------------------------------------------------------------------------------------------
# reading runs


def load(run_or_results: Any):
    """A `Results` object from a run folder, a results.json path or an already loaded Results."""
    if hasattr(run_or_results, "records") and hasattr(run_or_results, "predictions"):
        return run_or_results
    from aligneval.results import load_results

    return load_results(run_or_results)


def run_label(results) -> str:
    return str(getattr(results, "run_dir", "") or "run")


def split_info(results, split: str) -> dict:
    data = getattr(results, "doc", {}).get("data", {}) or {}
    info = data.get(split) or {}
    return info if isinstance(info, dict) else getattr(info, "__dict__", {})


def split_role(results, split: str) -> str:
    return split_info(results, split).get("role", "test")


# ----------------------------------------------------------------------------------------------
# model groups (seeds)


def model_groups(models) -> dict[str, list[str]]:
    """{'baseline': ['baseline@13', 'baseline@42'], ...}: seeds group by the part before '@'."""
    groups: dict[str, list[str]] = {}
    for m in models:
        groups.setdefault(m.split("@", 1)[0], []).append(m)
    return groups


def pick_group(groups: dict[str, list[str]], name: str, where: str) -> list[str]:
    if name in groups:
        return groups[name]
    for members in groups.values():
        if name in members:
            return [name]
    from aligneval.registry import did_you_mean

    raise UsageError(f"no model '{name}' in {where}{did_you_mean(name, list(groups))}; "
                     f"models: {', '.join(sorted(groups)) or 'none'}")


def _models_of(results) -> list[str]:
    names = list(getattr(results, "models", {}) or {})
    for r in results.records:
        if r.model not in names:
            names.append(r.model)
    return names


# ----------------------------------------------------------------------------------------------
# the comparison


@dataclass
class Comparison:
    """Comparison records plus what produced them; `to_doc()` is comparison.json."""

    baseline: str
    candidate: str
    records: list[dict[str, Any]]
    results: Any  # the candidate's run
    baseline_results: Any
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def find(self, metric: str, split: str, suite: str | None = None) -> dict | None:
        for r in self.records:
            if r["metric"] == metric and r["split"] == split and (suite is None or r["suite"] == suite):
                return r
        return None

    def to_doc(self) -> dict[str, Any]:
        doc = dict(getattr(self.results, "doc", {}) or {})
        doc["comparison"] = {
            "version": COMPARISON_VERSION,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "baseline_run": run_label(self.baseline_results),
            "candidate_run": run_label(self.results),
            "settings": self.settings,
            "warnings": self.warnings,
            "records": self.records,
        }
        return doc

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(self.to_doc()), indent=1, allow_nan=False))
        return path


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _direction(rec) -> bool | None:
    if rec.higher_is_better is not None:
        return rec.higher_is_better
    try:
        return stats.get_metric(stats.base_name(rec.metric)).higher_is_better
    except Exception:
        return None


def _attack_log(results, model: str, recipe: str) -> dict[str, dict] | None:
    """Result rows by id from runs/<run>/attacks/<model>/<recipe>.jsonl (header line skipped)."""
    run_dir = getattr(results, "run_dir", None)
    if run_dir is None:
        return None
    file = Path(run_dir) / "attacks" / model / f"{recipe}.jsonl"
    if not file.is_file():
        return None
    rows: dict[str, dict] = {}
    try:
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("kind", "result") == "result" and "id" in row:
                rows[str(row["id"])] = row
    except (OSError, ValueError):
        raise ArtifactError(f"{file} is corrupt (not JSON lines)") from None
    return rows


def attack_correct_after(row: dict) -> float | None:
    """1.0 if the example is still classified correctly after the attack (TextAttack outcomes:
    failed = survived; succeeded = flipped; skipped = already wrong), None if the row says neither."""
    status = str(row.get("outcome", row.get("result", ""))).lower()
    if status in ("failed", "failure", "maximum_attempts"):
        return 1.0
    if status in ("succeeded", "successful", "success", "skipped"):
        return 0.0
    return None


def compare(results, baseline: str = "baseline", candidate: str | None = None, *, resamples: int = 1000,
            seed: int = 0, holm: bool = False, confidence: float = 0.95, alpha: float = 0.05,
            against=None, only: set[tuple[str, str]] | None = None, progress=None) -> Comparison:
    """Compare `candidate` with `baseline` on every record both have.

    `results`: a run folder, results.json or Results. `against`: an older run whose `baseline` model is
    the reference (the candidate comes from `results`). `only`: restrict to {(metric, split)} pairs.
    """
    if resamples < 1:
        raise UsageError("--resamples must be at least 1")
    if not 0 < confidence < 1:
        raise UsageError("confidence must lie strictly between 0 and 1")
    cand_res = load(results)
    base_res = load(against) if against is not None else cand_res
    cand_groups = model_groups(_models_of(cand_res))
    base_groups = model_groups(_models_of(base_res))
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
    settings = {"resamples": resamples, "seed": seed, "holm": holm, "confidence": confidence, "alpha": alpha,
                "ci": "percentile bootstrap over example ids (paired)",
                "accuracy_test": "exact McNemar (binomial, two-sided)"}
    comp = Comparison(baseline, candidate, [], cand_res, base_res, settings)
    if len(base_models) > 1 or len(cand_models) > 1:
        comp.records = _compare_seeds(base_res, cand_res, base_models, cand_models, confidence, alpha, only)
    else:
        comp.records = _compare_single(comp, base_models[0], cand_models[0], resamples, seed, confidence,
                                       alpha, only, progress)
    if holm:
        adjusted = stats.holm([r["p_value"] for r in comp.records])
        for r, p in zip(comp.records, adjusted):
            r["p_value_raw"], r["p_value"] = r["p_value"], p
            r["verdict"] = stats.verdict(r["delta"], p, r["higher_is_better"], alpha, (r["ci_low"], r["ci_high"]))
    return comp


def _key(rec) -> tuple[str, str, str]:
    return (rec.suite, rec.split, rec.metric)


def _row(rec_a, rec_b, n: int, iv: stats.Interval | None, alpha: float, basis: str | None,
         extra: dict | None = None) -> dict[str, Any]:
    hib = _direction(rec_b)
    va, vb = rec_a.value, rec_b.value
    delta = None if va is None or vb is None else float(vb) - float(va)
    lo = hi = p = None
    method = "point values (no per-example data)"
    if iv is not None:
        lo, hi, p, method = iv.ci_low, iv.ci_high, iv.p_value, iv.method
    return {
        "suite": rec_b.suite, "split": rec_b.split, "metric": rec_b.metric,
        "baseline_model": rec_a.model, "candidate_model": rec_b.model,
        "baseline": va, "candidate": vb, "delta": delta, "ci_low": lo, "ci_high": hi, "p_value": p,
        "method": method, "verdict": stats.verdict(delta, p, hib, alpha, (lo, hi)),
        "higher_is_better": hib, "range": list(rec_b.range), "n": int(n), "basis": basis,
        "temperature": {"baseline": rec_a.temperature, "candidate": rec_b.temperature}
        if (rec_a.temperature is not None or rec_b.temperature is not None) else None,
        "extra": dict(extra or {}),
    }


def _compare_single(comp: Comparison, model_a: str, model_b: str, resamples: int, seed: int, confidence: float,
                    alpha: float, only, progress) -> list[dict]:
    base_res, cand_res = comp.baseline_results, comp.results
    recs_a = {_key(r): r for r in base_res.records if r.model == model_a}
    recs_b = {_key(r): r for r in cand_res.records if r.model == model_b}
    keys = [k for k in recs_b if k in recs_a and (only is None or (k[2], k[1]) in only)]
    missing = sorted(set(recs_b) - set(recs_a))
    if missing:
        comp.warnings.append(f"{len(missing)} candidate records have no baseline counterpart "
                             f"(e.g. {missing[0][2]} [{missing[0][1]}])")
    rows: dict[tuple, dict] = {}
    by_split: dict[str, list[tuple]] = {}
    for k in keys:
        ra, rb = recs_a[k], recs_b[k]
        if ra.basis == "predictions" and rb.basis == "predictions" and ra.value is not None and rb.value is not None:
            by_split.setdefault(k[1], []).append(k)
        elif ra.basis == "attack" and rb.basis == "attack":
            rows[k] = _attack_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha)
        elif ra.basis == "per_example" and rb.basis == "per_example":
            rows[k] = _per_example_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha)
        else:
            rows[k] = _row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis)
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
        sa, sb, obs, stat_of = {}, {}, {}, {}
        ranked_a: dict = {}
        ranked_b: dict = {}
        for k in split_keys:
            ra, rb = recs_a[k], recs_b[k]
            sk = (stats.base_name(rb.metric), ra.temperature, rb.temperature)
            stat_of[k] = sk
            if sk in sa:
                continue
            sa[sk] = resampling.statistic(ra.metric, probs_a, labels, ra.temperature, ranked_a)
            sb[sk] = resampling.statistic(rb.metric, probs_b, labels, rb.temperature, ranked_b)
            obs[sk] = (resampling.observed(sa[sk], len(labels)), resampling.observed(sb[sk], len(labels)))
        boot = resampling.bootstrap_split(sa, sb, len(labels), resamples=resamples, seed=seed, split=split)
        for k in split_keys:
            ra, rb = recs_a[k], recs_b[k]
            sk = stat_of[k]
            va, vb = boot[sk]
            iv = stats.percentile_interval(obs[sk][1] - obs[sk][0], vb - va, confidence)
            extra = {}
            for side, rec, val in (("baseline", ra, obs[sk][0]), ("candidate", rb, obs[sk][1])):
                if not math.isclose(val, rec.value, rel_tol=1e-6, abs_tol=1e-9):
                    comp.warnings.append(f"{rec.metric} [{split}] of {rec.model}: stored {rec.value:.6g} but "
                                         f"the stored predictions give {val:.6g}")
                    extra[f"{side}_recomputed"] = val
            if stats.base_name(rb.metric) == "accuracy":
                mc = stats.mcnemar(probs_a.argmax(1) == labels, probs_b.argmax(1) == labels) if rb.temperature is None \
                    else stats.mcnemar(stats.apply_temperature(probs_a, ra.temperature).argmax(1) == labels,
                                       stats.apply_temperature(probs_b, rb.temperature).argmax(1) == labels)
                iv = stats.Interval(iv.delta, iv.ci_low, iv.ci_high, mc.p_value,
                                    "paired bootstrap CI; exact McNemar p", iv.resamples)
                extra.update({"mcnemar_b": mc.b, "mcnemar_c": mc.c})
            rows[k] = _row(ra, rb, len(labels), iv, alpha, "predictions", extra)
            rows[k]["resamples"] = iv.resamples
        if progress is not None:
            progress(split)
    return [rows[k] for k in keys]


def _attack_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha) -> dict:
    """Accuracy under attack, paired over the attacked ids when both attack logs are present and
    reproduce the stored values; otherwise the stored point values."""
    recipe = (rb.extra or {}).get("recipe") or rb.metric.split(":")[-2]
    if stats.base_name(rb.metric) == "accuracy_under_attack" and ra.value is not None and rb.value is not None:
        la, lb = _attack_log(base_res, ra.model, recipe), _attack_log(cand_res, rb.model, recipe)
        if la and lb:
            if set(la) != set(lb):
                raise DataError(f"attack '{recipe}' [{rb.split}]: the two models were attacked on different "
                                f"example lists ({len(la)} vs {len(lb)} ids)")
            ids = sorted(la)
            headline = not rb.metric.startswith("all:") and (rb.extra or {}).get("examples_mode") == "correct-by-all"
            if headline:  # the headline scope: examples every model classified correctly before the attack
                ids = [i for i in ids if la[i].get("outcome") != "skipped" and lb[i].get("outcome") != "skipped"]
            x = np.array([attack_correct_after(la[i]) for i in ids], dtype=float)
            y = np.array([attack_correct_after(lb[i]) for i in ids], dtype=float)
            if (len(ids) == ra.n == rb.n and len(ids) and not np.isnan(x).any() and not np.isnan(y).any()
                    and math.isclose(x.mean(), ra.value, abs_tol=1e-9) and math.isclose(y.mean(), rb.value, abs_tol=1e-9)):
                iv = resampling.bootstrap_mean_difference(x, y, resamples=resamples, seed=seed, confidence=confidence)
                mc = stats.mcnemar(x > 0, y > 0)
                iv = stats.Interval(iv.delta, iv.ci_low, iv.ci_high, mc.p_value,
                                    "paired bootstrap CI over attacked ids; exact McNemar p", iv.resamples)
                return _row(ra, rb, len(ids), iv, alpha, "attack",
                            {"recipe": recipe, "mcnemar_b": mc.b, "mcnemar_c": mc.c})
    return _row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis, {"recipe": recipe})


def per_example_values(results, rec) -> tuple[list[str], np.ndarray] | None:
    """(ids, values) of a `per_example` record: the column `extra["column"]` (default: the metric
    name) of the parquet `extra["values"]`, a path relative to the run folder. None when absent."""
    run_dir = getattr(results, "run_dir", None)
    rel = (rec.extra or {}).get("values")
    if run_dir is None or not rel:
        return None
    file = (Path(run_dir) / rel).resolve()
    if Path(run_dir).resolve() not in file.parents or not file.is_file():
        return None
    import pyarrow.parquet as pq

    column = (rec.extra or {}).get("column") or rec.metric
    try:
        table = pq.read_table(file, columns=["id", column])
    except Exception:  # noqa: BLE001 - any unreadable file is a corrupt artifact
        raise ArtifactError(f"{file} is corrupt or lacks the columns 'id', '{column}'") from None
    return [str(i) for i in table.column("id").to_pylist()], table.column(column).to_numpy(zero_copy_only=False)


def _per_example_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha) -> dict:
    """Mean of per-example values (e.g. alignment diagnostics), paired over the ids both models have
    a finite value for; the record's value must be that mean, else only the point values are shown."""
    va, vb = per_example_values(base_res, ra), per_example_values(cand_res, rb)
    if va is not None and vb is not None and ra.value is not None and rb.value is not None:
        xa = dict(zip(*va))
        xb = dict(zip(*vb))
        ids = [i for i in xa if i in xb and np.isfinite(xa[i]) and np.isfinite(xb[i])]
        x = np.array([xa[i] for i in ids], float)
        y = np.array([xb[i] for i in ids], float)
        if (len(ids) and math.isclose(float(x.mean()), ra.value, rel_tol=1e-6, abs_tol=1e-9)
                and math.isclose(float(y.mean()), rb.value, rel_tol=1e-6, abs_tol=1e-9)):
            iv = resampling.bootstrap_mean_difference(x, y, resamples=resamples, seed=seed, confidence=confidence)
            return _row(ra, rb, len(ids), iv, alpha, "per_example")
    return _row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis)


def _compare_seeds(base_res, cand_res, base_models, cand_models, confidence, alpha, only) -> list[dict]:
    """Seed-level comparison: per-seed values, mean +- sd, t interval of the difference of means."""

    def seed_of(m: str) -> str:
        return m.split("@", 1)[1] if "@" in m else m

    vals_a: dict[tuple, dict[str, Any]] = {}
    vals_b: dict[tuple, dict[str, Any]] = {}
    for res, models, vals in ((base_res, base_models, vals_a), (cand_res, cand_models, vals_b)):
        for r in res.records:
            if r.model in models and r.value is not None:
                vals.setdefault(_key(r), {})[seed_of(r.model)] = r
    rows = []
    for k, per_b in vals_b.items():
        per_a = vals_a.get(k)
        if not per_a or (only is not None and (k[2], k[1]) not in only):
            continue
        s = stats.seed_summary({sd: float(r.value) for sd, r in per_a.items()},
                               {sd: float(r.value) for sd, r in per_b.items()}, confidence)
        any_b = next(iter(per_b.values()))
        hib = _direction(any_b)
        iv = s.interval
        rows.append({
            "suite": k[0], "split": k[1], "metric": k[2],
            "baseline_model": ", ".join(sorted({r.model for r in per_a.values()})),
            "candidate_model": ", ".join(sorted({r.model for r in per_b.values()})),
            "baseline": s.baseline_mean, "candidate": s.candidate_mean, "delta": iv.delta,
            "ci_low": iv.ci_low, "ci_high": iv.ci_high, "p_value": iv.p_value, "method": iv.method,
            "verdict": stats.verdict(iv.delta, iv.p_value, hib, alpha, (iv.ci_low, iv.ci_high)),
            "higher_is_better": hib, "range": list(any_b.range),
            "n": int(min(r.n for r in list(per_a.values()) + list(per_b.values()))),
            "basis": "seeds", "temperature": None, "seeds": s.to_dict(), "extra": {},
        })
    return rows
