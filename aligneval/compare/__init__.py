"""Candidate vs baseline on the same examples: one comparison row per (suite, split, metric).

Reads only files (results.json, predictions parquet, attack logs). Prediction-basis records are
bootstrapped by resampling example ids (resampling); accuracy gets the exact McNemar test (stats);
several seeds (`baseline@13`, ...) get the combined seed + test-set interval (seeds); records that
cannot be recomputed per example are reported as point values without an interval (bases). p-values
are then adjusted within their family (multiplicity), rows below the minimum size get no verdict, and
bootstrap p-values whose resolution cannot settle the verdict are refined with more resamples (refine).
See docs/results.md, "Comparison statistics".

The one way to get a run's comparisons, fresh from comparison.json or computed:
`comparisons(run, baseline=..., candidate=..., stored=[paths], **settings) -> [Comparison]`.
`compare(run, ...)` computes one comparison without reading any stored file. Rows are typed
(`ComparisonRow`); the report and the gate read their attributes. Nothing here imports the report or
the gate: data flows align -> predict -> score -> compare -> report / gate.

Modules: runs (reading runs), models (seed groups, twin names and λ), planning (settings and models),
bases (record bases and their pairing), single / seeds (the computation), refine (adaptive p),
rows (the typed row), comparison (the result and comparison.json), stored (freshness, `comparisons`),
stats, resampling (drawing resamples, running both models), chunk_stats (each metric's statistic on a
chunk of resamples), multiplicity, options (the statistics settings and flags, declared once).
"""

import importlib


# The names below load on first use (PEP 562), so that importing one light module of the package (the
# CLI's `aligneval.compare.options`) does not load scipy, pyarrow and the whole comparison.
_EXPORTS = {
    "bases": ("BASES", "RecordBasis", "attack_correct_after", "per_example_values"),
    "comparison": ("COMPARISON_VERSION", "Comparison", "jsonable"),
    "compute": ("SINGLE_SEED_NOTE", "compare", "run_plan"),
    "models": ("find_twins", "group_of", "lambda_in_name", "lambdas", "model_groups", "pick_group", "seed_of",
               "twin_lambda", "twin_name"),
    "options": ("DEFAULT_ADJUST", "DEFAULT_MIN_N", "DEFAULT_RESAMPLES", "MAX_RESAMPLES", "STAT_OPTIONS"),
    "planning": ("Plan", "plan"),
    "refine": ("REFINE_BUDGET", "REFINE_Z"),
    "rows": ("ComparisonRow",),
    "runs": ("declared_primary", "input_fingerprints", "load", "models_of", "run_label", "split_info", "split_role"),
    "stored": ("FILE", "comparisons", "load_or_compare", "read_fresh", "read_sections", "staleness"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'aligneval.compare' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"aligneval.compare.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
