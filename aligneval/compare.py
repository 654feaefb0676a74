"""Candidate vs baseline on the same examples: one comparison record per (suite, split, metric).

Reads only files (results.json, predictions parquet, attack logs). Prediction-basis records are
bootstrapped by resampling example ids (aligneval.resampling); accuracy gets the exact McNemar test;
several seeds (`baseline@13`, ...) get the combined seed + test-set interval; records that cannot be
recomputed per example are reported as point values without an interval. p-values are then adjusted
within their family (aligneval.multiplicity), rows below the minimum size get no verdict, and bootstrap
p-values whose resolution cannot settle the verdict are refined with more resamples (up to a cap).
See docs/results.md, "Comparison statistics".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aligneval import multiplicity, resampling, stats
from aligneval.artifacts import read_json_lines
from aligneval.errors import ArtifactError, DataError, UsageError

COMPARISON_VERSION = "1.1"
DEFAULT_RESAMPLES = 1000
MAX_RESAMPLES = 20_000  # cap of the adaptive refinement
SINGLE_SEED_NOTE = "single seed: the interval covers test-set sampling only"
REFINE_Z = 2.0  # refine while moving a p by this many Monte-Carlo standard errors could change a decision
REFINE_BUDGET = 1e8  # extra resample x example cells the refinement may spend per comparison


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


def models_of(results) -> list[str]:
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
    inputs: dict[str, Any] = field(default_factory=dict)  # what it was computed from (freshness check)
    source: str = "computed"  # or the comparison.json it was read from
    stale: list[str] = field(default_factory=list)  # stored comparisons passed over, and why

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
            "inputs": self.inputs,
            "warnings": self.warnings,
            "records": self.records,
        }
        return doc

    def write(self, path: str | Path) -> Path:
        """Write comparison.json atomically (temporary file + rename)."""
        from aligneval.artifacts import write_json_atomic

        return write_json_atomic(Path(path), _jsonable(self.to_doc()))


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
    for row in read_json_lines(file):
        if not isinstance(row, dict):
            raise ArtifactError(f"{file} is corrupt (not JSON lines of objects)")
        if row.get("kind", "result") == "result" and "id" in row:
            rows[str(row["id"])] = row
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
    """Compute the comparison a plan describes."""
    s = p.settings
    comp = Comparison(s["baseline"], s["candidate"], [], p.cand_res, p.base_res, dict(s))
    comp.inputs = p.inputs
    only = {tuple(reversed(x.split("/", 1))) for x in s["only"]} if s["only"] is not None else None
    boots: list[_Boot] = []
    if len(p.base_models) > 1 or len(p.cand_models) > 1:
        comp.records = _compare_seeds(comp, p.base_models, p.cand_models, s["resamples"], s["seed"],
                                      s["confidence"], s["alpha"], only, progress)
    else:
        comp.records = _compare_single(comp, p.base_models[0], p.cand_models[0], s["resamples"], s["seed"],
                                       s["confidence"], s["alpha"], only, progress, boots)
        for r in comp.records:
            if r.get("ci_low") is not None:
                r["note"] = SINGLE_SEED_NOTE
    _refine(comp.records, boots, adjust=s["adjust"], alpha=s["alpha"], primary=s["primary"], min_n=s["min_n"],
            cap=s["max_resamples"], confidence=s["confidence"])
    return comp


def declared_primary(results) -> list[str] | None:
    """The spec's `primary` metrics: recorded in results.json's `spec`, or read from the spec file when
    that file is still the one the run used (same sha256)."""
    spec = (getattr(results, "doc", {}) or {}).get("spec") or {}
    if "primary" in spec:
        return list(spec["primary"] or []) or None
    path, sha = spec.get("path"), spec.get("sha256")
    if not path or not sha:
        return None
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    import hashlib
    import tomllib

    if hashlib.sha256(raw).hexdigest() != sha:
        return None
    try:
        value = tomllib.loads(raw.decode("utf-8")).get("primary")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return [str(v) for v in value] if isinstance(value, list) and value else None


def input_fingerprints(cand_res, base_res=None) -> dict[str, Any]:
    """sha256, size and mtime of the results.json files a comparison was computed from."""
    out = {"results": _file_fingerprint(cand_res)}
    if base_res is not None:
        out["against"] = _file_fingerprint(base_res)
    return out


def _file_fingerprint(results) -> dict[str, Any] | None:
    import hashlib

    run_dir = getattr(results, "run_dir", None)
    if run_dir is None:
        return None
    path = Path(run_dir) / "results.json"
    try:
        data = path.read_bytes()
        stat = path.stat()
    except OSError:
        return None
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "mtime": stat.st_mtime}


# ----------------------------------------------------------------------------------------------
# adaptive resolution of bootstrap p-values


@dataclass
class _Boot:
    """The bootstrap replicates behind one or more rows (a metric recorded by two suites shares one),
    and the group that can draw more of them."""

    group: Any  # has .more(keys, extra, stream) -> {key: extra deltas}
    key: Any
    observed: float
    deltas: np.ndarray
    rows: list[dict]
    method: str = "paired bootstrap"

    @property
    def resamples(self) -> int:
        return len(self.deltas)


class _SplitGroup:
    """The statistics of one split: extra resamples are drawn once and shared by the rows refined together."""

    def __init__(self, stats_a: dict, stats_b: dict, n: int, seed: int, split: str):
        self.stats_a, self.stats_b, self.n, self.seed, self.split = stats_a, stats_b, n, seed, split

    def more(self, keys, extra: int, stream: int) -> dict:
        boot = resampling.bootstrap_split({k: self.stats_a[k] for k in keys}, {k: self.stats_b[k] for k in keys},
                                          self.n, resamples=extra, seed=self.seed, split=self.split, stream=stream)
        return {k: vb - va for k, (va, vb) in boot.items()}


class _MeanGroup:
    """Per-example values of two models (diagnostics): the mean difference's replicates."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int):
        self.x, self.y, self.seed, self.n = x, y, seed, len(x)

    def more(self, keys, extra: int, stream: int) -> dict:
        d = resampling.mean_difference_replicates(self.x, self.y, resamples=extra, seed=self.seed, stream=stream)
        return {k: d for k in keys}


def _target(p: np.ndarray, i: int, boot: _Boot, method: str, alpha: float, cap: int) -> int | None:
    """Resamples test i needs before no decision of its family hangs on its Monte-Carlo error, or None
    when none does (or it is at the cap).

    At the floor (no resample crossed zero) the true p may be anywhere below 2/(R+1): if a smaller p
    would change a decision, R jumps to where the floor lies below the p at which it would
    (`critical_p`, with 5% room). Elsewhere, if moving p by REFINE_Z Monte-Carlo standard errors
    would change a decision, R doubles."""
    r = boot.resamples
    if r >= cap:
        return None
    row = boot.rows[0]
    if row.get("p_floor"):
        crit = multiplicity.critical_p(p, i, method, alpha)
        if crit <= 0:
            return None
        return min(cap, max(math.ceil(2 * 1.05 / crit), r + 1))
    se = stats.mc_standard_error(float(p[i]), r)
    if not multiplicity.sensitive(p, i, p[i] - REFINE_Z * se, p[i] + REFINE_Z * se, method, alpha):
        return None
    return min(cap, 2 * r)


def _set_interval(boot: _Boot, confidence: float) -> None:
    iv = stats.percentile_interval(boot.observed, boot.deltas, confidence, boot.method)
    for r in boot.rows:
        r["ci_low"], r["ci_high"] = iv.ci_low, iv.ci_high
        r["p_value_raw"] = r["p_value"] = iv.p_value
        r["p_floor"] = bool(iv.extra.get("p_floor", False))
        r["resamples"] = iv.resamples


def _refine(rows: list[dict], boots: list[_Boot], *, adjust: str, alpha: float, primary, min_n: int, cap: int,
            confidence: float, budget: float | None = None, max_rounds: int = 12) -> None:
    """Adjust within families; then, while some bootstrap p's Monte-Carlo error could change a decision,
    draw more resamples for those tests only (one shared draw per split and round) and adjust again.
    The extra work is bounded by `budget` resample x example cells (default REFINE_BUDGET); tests left
    unsettled by the cap or the budget say so (`p_settled: false`)."""
    for r in rows:
        r.setdefault("p_floor", False)
        r.setdefault("p_value_raw", r.get("p_value"))
    multiplicity.apply(rows, method=adjust, alpha=alpha, primary=primary, min_n=min_n)
    boot_of = {id(r): b for b in boots for r in b.rows}
    left = REFINE_BUDGET if budget is None else budget

    def pending() -> dict[int, tuple[Any, dict[int, tuple[_Boot, int]]]]:
        todo: dict[int, tuple[Any, dict[int, tuple[_Boot, int]]]] = {}
        for family in (multiplicity.PRIMARY, multiplicity.EXPLORATORY):
            tests = multiplicity.family_tests(rows, family)
            p = np.array([t[0]["p_value_raw"] for t in tests], float)
            for i, test in enumerate(tests):
                b = next((boot_of[id(r)] for r in test if id(r) in boot_of), None)
                t = None if b is None else _target(p, i, b, adjust, alpha, cap)
                if t is not None:
                    todo.setdefault(id(b.group), (b.group, {}))[1][id(b)] = (b, t)
        return todo

    for stream in range(1, max_rounds + 1):
        todo = pending()
        if not todo or left <= 0:
            break
        for group, items in todo.values():
            extra = max(t - b.resamples for b, t in items.values())
            extra = min(extra, int(left // max(group.n, 1)))
            if extra < 1:
                continue
            left -= extra * group.n
            new = group.more([b.key for b, _ in items.values()], extra, stream)
            for b, t in items.values():
                b.deltas = np.concatenate([b.deltas, new[b.key][: t - b.resamples]])
                _set_interval(b, confidence)
        multiplicity.apply(rows, method=adjust, alpha=alpha, primary=primary, min_n=min_n)
    unsettled = {id(b) for _, items in pending().values() for b, _ in items.values()}
    for b in boots:
        for r in b.rows:
            r["p_mc_se"] = stats.mc_standard_error(r["p_value_raw"], b.resamples) if r["p_value_raw"] else None
            if r.get("family") is not None:
                r["p_settled"] = id(b) not in unsettled


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
        "resamples": iv.resamples if iv is not None else 0, "p_floor": False,
        "extra": dict(extra or {}),
    }


def _compare_single(comp: Comparison, model_a: str, model_b: str, resamples: int, seed: int, confidence: float,
                    alpha: float, only, progress, boots: list | None = None) -> list[dict]:
    """One model on each side. Bootstrap-p rows are registered in `boots` for adaptive refinement."""
    boots = [] if boots is None else boots
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
            rows[k] = _per_example_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha, boots)
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
        group = _SplitGroup(sa, sb, len(labels), seed, split)
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
            if stats.base_name(rb.metric) == "accuracy":
                mc = stats.mcnemar(probs_a.argmax(1) == labels, probs_b.argmax(1) == labels) if rb.temperature is None \
                    else stats.mcnemar(stats.apply_temperature(probs_a, ra.temperature).argmax(1) == labels,
                                       stats.apply_temperature(probs_b, rb.temperature).argmax(1) == labels)
                iv = stats.Interval(iv.delta, iv.ci_low, iv.ci_high, mc.p_value,
                                    "paired bootstrap CI; exact McNemar p", iv.resamples)
                extra.update({"mcnemar_b": mc.b, "mcnemar_c": mc.c})
                p_floor = False  # exact: no resampling floor
            rows[k] = _row(ra, rb, len(labels), iv, alpha, "predictions", extra)
            rows[k]["resamples"] = iv.resamples
            rows[k]["p_floor"] = p_floor
            if stats.base_name(rb.metric) != "accuracy" and iv.p_value is not None:
                if sk in shared:
                    shared[sk].rows.append(rows[k])
                else:
                    shared[sk] = _Boot(group, sk, iv.delta, vb - va, [rows[k]])
                    boots.append(shared[sk])
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


def _per_example_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha, boots=None) -> dict:
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
            deltas = resampling.mean_difference_replicates(x, y, resamples=resamples, seed=seed)
            iv = stats.percentile_interval(float((y - x).mean()), deltas, confidence)
            row = _row(ra, rb, len(ids), iv, alpha, "per_example")
            row["resamples"], row["p_floor"] = iv.resamples, bool(iv.extra.get("p_floor", False))
            if boots is not None:
                boots.append(_Boot(_MeanGroup(x, y, seed), rb.metric, iv.delta, deltas, [row]))
            return row
    return _row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis)


def _seed_of(model: str) -> str:
    return model.split("@", 1)[1] if "@" in model else model


def _compare_seeds(comp: Comparison, base_models, cand_models, resamples, seed, confidence, alpha, only,
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
                vals.setdefault(_key(r), {})[_seed_of(r.model)] = r
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
        hib = _direction(any_b)
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
