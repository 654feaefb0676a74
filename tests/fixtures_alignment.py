"""Synthetic alignment diagnostics and dose–response runs for the report tests.

`add_alignment` appends records in the `alignment` suite's contract to a run made by
tests/fixtures_results.make_run: `kq_mmd2`, `kq_probe_acc`, `attn_entropy` overall, per layer (`@L3`)
and per head (`@L3H5`), basis "per_example", with the per-example parquet the comparison bootstraps
(alignment/<model>/<split>.parquet, one column per record). Every record's value is the mean of its
column, and per-layer / overall columns are the means of the per-head columns, as the suite computes.

`make_dose_run` writes a run with one baseline and one twin per λ (`aligned-lam0.1`, optionally per
seed `aligned-lam0.1@13`), cards carrying role and λ, and alignment diagnostics whose K–Q gap shrinks
with λ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from tests.fixtures_results import make_run

FAMILIES = ("kq_mmd2", "kq_probe_acc", "attn_entropy")
RANGES = {"kq_mmd2": [0.0, None], "kq_probe_acc": [0.0, 1.0], "attn_entropy": [0.0, None]}


def _per_head_values(rng, n: int, n_layers: int, n_heads: int, strength: float, example: np.ndarray,
                     head_level: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """family -> [n, layers, heads]: a head's level scaled by the model's `strength` (1 = baseline-like,
    smaller = more aligned) plus an example effect shared by every model (so the pairing matters)."""
    noise = lambda scale: rng.normal(0.0, scale, size=(n, n_layers, n_heads))  # noqa: E731
    mmd = head_level["kq_mmd2"] * strength + 0.01 * example[:, None, None] + noise(0.03)
    probe = np.clip(0.5 + head_level["kq_probe_acc"] * strength + 0.02 * example[:, None, None] + noise(0.08),
                    0.0, 1.0)
    entropy = head_level["attn_entropy"] + 0.1 * (1 - strength) + 0.05 * example[:, None, None] + noise(0.2)
    return {"kq_mmd2": mmd, "kq_probe_acc": probe, "attn_entropy": entropy}


def add_alignment(run_dir: str | Path, strength: dict[str, float] | Callable[[str], float], *, split: str = "test",
                  n_layers: int = 3, n_heads: int = 4, n: int = 60, seed: int = 0, per_head: bool = True) -> Path:
    """Append alignment records (and their per-example parquet) for every model named in `strength`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    doc = json.loads((run_dir / "results.json").read_text())
    models = list(doc["models"])
    get = strength if callable(strength) else strength.get
    rng = np.random.default_rng(seed)
    ids = [f"{split}-{i:06d}" for i in range(n)]
    example = rng.normal(size=n)
    head_level = {"kq_mmd2": rng.uniform(0.02, 0.08, (n_layers, n_heads)),
                  "kq_probe_acc": rng.uniform(0.15, 0.4, (n_layers, n_heads)),
                  "attn_entropy": rng.uniform(1.5, 2.5, (n_layers, n_heads))}
    for model in models:
        s = get(model)
        if s is None:
            continue
        values = _per_head_values(rng, n, n_layers, n_heads, float(s), example, head_level)
        rel = f"alignment/{model}/{split}.parquet"
        columns: dict[str, np.ndarray] = {}
        meta: dict[str, dict] = {}
        for family, v in values.items():
            columns[family] = v.mean(axis=(1, 2))
            meta[family] = {}
            for layer in range(n_layers):
                columns[f"{family}@L{layer}"] = v[:, layer, :].mean(axis=1)
                meta[f"{family}@L{layer}"] = {"layer": layer}
                if per_head:
                    for head in range(n_heads):
                        columns[f"{family}@L{layer}H{head}"] = v[:, layer, head]
                        meta[f"{family}@L{layer}H{head}"] = {"layer": layer, "head": head}
        path = run_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), **{k: pa.array(c) for k, c in columns.items()}}),
                       path)
        for metric, col in columns.items():
            family = metric.split("@")[0]
            doc["records"].append({
                "suite": "alignment", "split": split, "model": model, "metric": metric,
                "value": float(col.mean()), "n": n, "higher_is_better": None, "range": RANGES[family],
                "basis": "per_example", "temperature": None,
                "extra": {"values": rel, "column": metric, **meta[metric], "n_layers": n_layers, "n_heads": n_heads},
            })
    (run_dir / "results.json").write_text(json.dumps(doc, indent=1))
    return run_dir


def lam_name(lam: float) -> str:
    return f"aligned-lam{format(lam, 'g')}"


def make_dose_run(run_dir: str | Path, lambdas: Iterable[float] = (0.01, 0.1, 1.0), *,
                  seeds: Iterable[int] | None = None, n: int = 120, alignment: bool = True, names_only: bool = False,
                  **kwargs) -> Path:
    """A run with `baseline` and one `aligned-lam<λ>` twin per λ (cards: role, λ); the twins' K–Q gap
    shrinks with λ. `names_only`: no λ in the cards (the report then reads λ from the names)."""
    lambdas = list(lambdas)
    models = {"baseline": (1.6, 1.8)}
    for i, lam in enumerate(lambdas):
        models[lam_name(lam)] = (1.6 + 0.25 * (i + 1), 1.8 - 0.25 * (i + 1))
    run_dir = make_run(run_dir, n=n, models=models, seeds=seeds, **kwargs)
    doc = json.loads((run_dir / "results.json").read_text())
    lam_of = {lam_name(lam): lam for lam in lambdas}
    for name, info in doc["models"].items():
        group = name.split("@")[0]
        if names_only:
            info["card"] = None
        elif group == "baseline":
            info["card"] = {"role": "baseline", "lambda": 0.0, "variant": "mmd", "base_model": "tiny-bert"}
        else:
            info["card"] = {"role": "aligned", "lambda": lam_of[group], "variant": "mmd", "base_model": "tiny-bert"}
    (run_dir / "results.json").write_text(json.dumps(doc, indent=1))
    if alignment:
        def strength(model: str) -> float:
            group = model.split("@")[0]
            return 1.0 if group == "baseline" else 1.0 / (1.0 + 2.0 * lam_of[group])

        add_alignment(run_dir, strength)
    return run_dir
