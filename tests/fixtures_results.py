"""Synthetic but schema-valid run folders (docs/design.md): results.json + predictions parquet.

Two models (`baseline`, `aligned`, optionally with seeds `baseline@13`) over dev / test / ood splits.
Every `basis="predictions"` record is `get_metric(name).fn(probs, labels)` on the stored predictions
(temperature applied for `ts:` records), so paired statistics can be checked against it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

SPLITS = {"dev": "dev", "test": "test", "ood_amazon": "ood"}
METRICS = {  # suite -> metrics recorded on every split
    "accuracy": ["accuracy", "macro_f1"],
    "calibration": ["ece@15", "mce@15", "brier", "nll"],
    "uncertainty": ["aurc", "auroc_error"],
}
TS_METRICS = ["ece@15", "nll"]
NASTY_TEXTS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "{{ 7*7 }}"]


def synthetic_probs(n: int, k: int, rng, skill: float = 1.0, round_to: int | None = None):
    """(probs [n, k], labels [n]) of a softmax model that is right more often than chance; `round_to`
    rounds the probabilities, which ties confidences (rank-based statistics must handle ties)."""
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += skill
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    if round_to:
        p = np.round(p, round_to)
        p /= p.sum(1, keepdims=True)
    return p, labels


def get_metric(name: str):
    from aligneval.metrics import get_metric as _get

    return _get(name)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def synth_predictions(n: int, skill: float, sharpness: float, rng: np.random.Generator,
                      labels: np.ndarray, k: int = 2) -> np.ndarray:
    """Probabilities with accuracy rising with `skill` and over-confidence rising with `sharpness`."""
    logits = rng.normal(0.0, 1.0, size=(n, k))
    logits[np.arange(n), labels] += skill
    return softmax(logits * sharpness)


def temperature_scale(probs: np.ndarray, t: float) -> np.ndarray:
    return softmax(np.log(np.clip(probs, 1e-12, 1.0)) / t)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    nll = get_metric("nll").fn
    grid = np.round(np.arange(0.05, 5.0, 0.05), 2)
    return float(grid[int(np.argmin([nll(temperature_scale(probs, t), labels) for t in grid]))])


def _texts(split: str, n: int, rng: np.random.Generator, nasty: bool) -> list[str]:
    words = ["great", "awful", "plot", "acting", "boring", "loved", "the", "film", "was", "not", "a", "movie"]
    out = [f"{split} review {i}: " + " ".join(rng.choice(words, size=int(rng.integers(4, 30))))
           for i in range(n)]
    if nasty:
        for i, t in enumerate(NASTY_TEXTS):
            out[i] = t
    return out


def write_predictions(path: Path, ids: list[str], labels: np.ndarray, probs: np.ndarray,
                      texts: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    k = probs.shape[1]
    flat = pa.array(probs.astype(np.float64).ravel())
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "label": pa.array(labels.astype(np.int64)),
        "probs": pa.FixedSizeListArray.from_arrays(flat, k).cast(pa.list_(pa.float64())),
        "text_sha256": pa.array([hashlib.sha256(t.encode()).hexdigest() for t in texts]),
        "text": pa.array(texts, pa.string()),
    })
    pq.write_table(table, path)


def disagreement_curves(model_names, splits, split_data, all_probs) -> list[dict[str, Any]]:
    """The accuracy suite's stored `disagreements` tables for this synthetic run (test splits)."""
    from aligneval.suites.accuracy import disagreement_curves as suite_curves
    from aligneval.suites.base import Predictions, SplitInfo, SuiteContext

    preds = {(m, s): Predictions(split_data[s][0], split_data[s][1], all_probs[(m, s)], split_data[s][2])
             for (m, s) in all_probs}
    infos = {s: SplitInfo(s, role, "", "", len(split_data[s][0])) for s, role in splits.items()}
    ctx = SuiteContext({m: None for m in model_names}, infos, preds, Path("."))
    tests = [s for s, role in splits.items() if role == "test"]
    return [c.to_dict() for c in suite_curves(ctx, tests, 25)]


ATTACK_META = {"accuracy_under_attack": (True, [0.0, 1.0]), "attack_success_rate": (False, [0.0, 1.0])}


def record(suite, split, model, metric, value, n, basis="predictions", temperature=None, extra=None):
    base = metric.rsplit(":", 1)[-1]
    if base in ATTACK_META:
        hib, rng = ATTACK_META[base]
    else:
        m = get_metric(metric)
        hib, rng = m.higher_is_better, list(m.range)
    return {"suite": suite, "split": split, "model": model, "metric": metric,
            "value": None if value is None else float(value), "n": int(n),
            "higher_is_better": hib, "range": list(rng), "basis": basis,
            "temperature": temperature, "extra": dict(extra or {})}


def make_run(run_dir: str | Path, n: int = 300, seed: int = 0,
             models: dict[str, tuple[float, float]] | None = None,
             splits: dict[str, str] | None = None, sizes: dict[str, int] | None = None,
             nasty: bool = False, attacks: bool = True, seeds: Iterable[int] | None = None,
             k: int = 2, with_texts: bool = True, attack_logs: bool = True) -> Path:
    """Write runs/<x>/{results.json, predictions/<model>/<split>.parquet}; return the run folder.

    `models` maps name -> (skill, sharpness); `seeds` turns every model into `name@seed` copies.
    """
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    models = models or {"baseline": (1.6, 1.8), "aligned": (1.8, 1.2)}
    splits = splits or dict(SPLITS)
    sizes = sizes or {}
    model_names = [f"{m}@{s}" for s in seeds for m in models] if seeds else list(models)
    records: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    split_data = {}
    for split, role in splits.items():
        size = sizes.get(split, n)
        labels = rng.integers(0, k, size=size)
        ids = [f"{split}-{i:06d}" for i in range(size)]
        texts = _texts(split, size, rng, nasty) if with_texts else [f"{split} {i}" for i in range(size)]
        fp = hashlib.sha256(("\n".join(ids) + str(labels.tolist())).encode()).hexdigest()
        data[split] = {"role": role, "source": f"data/{split}.jsonl", "fingerprint": fp, "size": size,
                       "skipped": 0, "label_names": ["negative", "positive"][:k] if k == 2 else
                       [f"class{c}" for c in range(k)]}
        split_data[split] = (ids, labels, texts)

    from aligneval.metrics.calibration import reliability_bins
    from aligneval.metrics.uncertainty import risk_coverage

    all_probs: dict[tuple[str, str], np.ndarray] = {}
    for mi, name in enumerate(model_names):
        base = name.split("@")[0]
        skill, sharp = models[base]
        if seeds:
            skill += 0.05 * rng.normal()
        probs_by_split = {}
        for split, (ids, labels, texts) in split_data.items():
            shift = 0.6 if splits[split] == "ood" else 0.0
            probs = synth_predictions(len(ids), skill - shift, sharp, rng, labels, k)
            probs_by_split[split] = probs
            all_probs[(name, split)] = probs
            write_predictions(run_dir / "predictions" / name / f"{split}.parquet", ids, labels, probs, texts)
            for suite, metrics in METRICS.items():
                for metric in metrics:
                    records.append(record(suite, split, name, metric, get_metric(metric).fn(probs, labels),
                                          len(ids)))
            curves.append({"suite": "calibration", "split": split, "model": name, "name": "reliability",
                           "data": reliability_bins(probs, labels, 15)})
            curves.append({"suite": "uncertainty", "split": split, "model": name, "name": "risk_coverage",
                           "data": risk_coverage(probs, labels)})
        dev = [s for s, r in splits.items() if r == "dev"]
        if dev:
            t = fit_temperature(probs_by_split[dev[0]], split_data[dev[0]][1])
            for split, role in splits.items():
                if role == "dev":
                    continue
                scaled = temperature_scale(probs_by_split[split], t)
                for metric in TS_METRICS:
                    records.append(record("calibration", split, name, f"ts:{metric}",
                                          get_metric(metric).fn(scaled, split_data[split][1]),
                                          len(split_data[split][0]), temperature=t, extra={"fitted_on": dev[0]}))
        test = [s for s, r in splits.items() if r == "test"]
        if attacks and test:
            ids, labels, texts = split_data[test[0]]
            n_att = min(20, len(ids))
            for recipe, strength in (("deepwordbug", 0.55), ("pruthi", 0.25)):
                correct = rng.random(n_att) < (0.8 - strength + 0.1 * mi)
                succeeded = correct & (rng.random(n_att) < 0.7)
                outcome = np.where(~correct, "skipped", np.where(succeeded, "succeeded", "failed"))
                after = outcome == "failed"
                extra = {"recipe": recipe, "examples_mode": "random"}
                records.append(record("adversarial", test[0], name, f"{recipe}:accuracy_under_attack",
                                      after.mean(), n_att, basis="attack", extra=extra))
                attacked = int(correct.sum())
                records.append(record("adversarial", test[0], name, f"{recipe}:attack_success_rate",
                                      succeeded.sum() / attacked if attacked else None, attacked, basis="attack",
                                      extra=dict(extra, denominator="attacked examples")))
                if attack_logs:
                    log = run_dir / "attacks" / name / f"{recipe}.jsonl"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    lines = [{"kind": "header", "format": 1, "recipe": recipe}]
                    lines += [{"kind": "result", "id": ids[i], "label": int(labels[i]), "outcome": str(outcome[i]),
                               "original": texts[i], "perturbed": texts[i].upper()} for i in range(n_att)]
                    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
                for i in range(3):
                    examples.append({"suite": "adversarial", "model": name, "recipe": recipe, "split": test[0],
                                     "id": ids[i], "label": str(labels[i]), "outcome": str(outcome[i]),
                                     "original": texts[i], "perturbed": texts[i].upper() + " <b>x</b>"})
    curves += disagreement_curves(model_names, splits, split_data, all_probs)
    doc = {
        "schema_version": "1.0",
        "created": "2026-11-25T07:00:00Z",
        "aligneval_version": "0.1.0",
        "environment": {"python": "3.11.2", "packages": {"torch": "2.13.0", "transformers": "4.57.6"},
                        "device": "cpu", "torch_threads": 2},
        "spec": {"name": "synthetic", "path": "suites/synthetic.toml", "sha256": "0" * 64},
        "seed": seed,
        "models": {name: {"path": f"checkpoints/x/{name}", "weights_sha256": hashlib.sha256(name.encode()).hexdigest(),
                          "card": ({"variant": "ct", "lambda": 0.01, "base_model": "tiny-bert"}
                                   if name.startswith("aligned") else None)}
                   for name in model_names},
        "data": data,
        "records": records,
        "curves": curves,
        "examples": examples,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(doc, indent=1))
    return run_dir
