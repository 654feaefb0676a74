"""Record bases: how a pair of records (baseline, candidate) is compared per example.

A record's `basis` names one entry of `BASES`: "predictions" records are recomputed from the stored
predictions (grouped per split, one shared bootstrap: aligneval.compare.single), "attack" records from
the two attack logs (paired over the attacked ids) and "per_example" records from a parquet of
per-example values. A record of any other basis (or of two different bases) is shown as point values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aligneval.artifacts import as_numpy, read_json_lines, read_table
import aligneval.compare.resampling as resampling
import aligneval.compare.stats as stats
from aligneval.compare.refine import Boot, MeanGroup
from aligneval.errors import ArtifactError, DataError
from aligneval.metrics import base_metric_name, get_metric
from aligneval.registry import Registry


@dataclass(frozen=True)
class RecordBasis:
    """`pair(base_res, cand_res, rec_a, rec_b, resamples, seed, confidence, alpha, boots) -> row dict`, or
    None when rows of this basis are grouped (computed together per split by the caller)."""

    name: str
    description: str
    pair: Callable[..., dict] | None = None

    @property
    def grouped(self) -> bool:
        return self.pair is None


BASES: Registry[RecordBasis] = Registry("record basis")


def direction(rec) -> bool | None:
    if rec.higher_is_better is not None:
        return rec.higher_is_better
    try:
        return get_metric(base_metric_name(rec.metric)).higher_is_better
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


def key_of(rec) -> tuple[str, str, str]:
    return (rec.suite, rec.split, rec.metric)


def point_row(rec_a, rec_b, n: int, iv: stats.Interval | None, alpha: float, basis: str | None,
         extra: dict | None = None) -> dict[str, Any]:
    hib = direction(rec_b)
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


def attack_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha, boots=None) -> dict:
    """Accuracy under attack, paired over the attacked ids when both attack logs are present and
    reproduce the stored values; otherwise the stored point values."""
    recipe = (rb.extra or {}).get("recipe") or rb.metric.split(":")[-2]
    if base_metric_name(rb.metric) == "accuracy_under_attack" and ra.value is not None and rb.value is not None:
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
                return point_row(ra, rb, len(ids), iv, alpha, "attack",
                            {"recipe": recipe, "mcnemar_b": mc.b, "mcnemar_c": mc.c})
    return point_row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis, {"recipe": recipe})


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
    column = (rec.extra or {}).get("column") or rec.metric
    try:
        table, _ = read_table(file, columns=["id", column])
    except Exception:  # noqa: BLE001 - any unreadable file is a corrupt artifact
        raise ArtifactError(f"{file} is corrupt or lacks the columns 'id', '{column}'") from None
    return [str(i) for i in table.column("id").to_pylist()], as_numpy(table.column(column).combine_chunks())


def per_example_row(base_res, cand_res, ra, rb, resamples, seed, confidence, alpha, boots=None) -> dict:
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
            row = point_row(ra, rb, len(ids), iv, alpha, "per_example")
            row["resamples"], row["p_floor"] = iv.resamples, bool(iv.extra.get("p_floor", False))
            if boots is not None:
                boots.append(Boot(MeanGroup(x, y, seed), rb.metric, iv.delta, deltas, [row]))
            return row
    return point_row(ra, rb, min(ra.n, rb.n), None, alpha, rb.basis)



BASES.add("predictions", RecordBasis(
    "predictions", "recomputed from the stored predictions (temperature applied when set); every record of a "
    "split shares one bootstrap of example ids"))
BASES.add("attack", RecordBasis(
    "attack", "accuracy under attack from the two attack logs, paired over the attacked ids", attack_row))
BASES.add("per_example", RecordBasis(
    "per_example", "the mean of per-example values stored in a parquet (`extra['values']`, column "
    "`extra['column']`), paired over the ids both models have", per_example_row))
