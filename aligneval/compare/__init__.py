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

Modules: runs (reading runs), models (seed groups, twin names and λ), plan (settings and models),
bases (record bases and their pairing), single / seeds (the computation), refine (adaptive p),
rows (the typed row), comparison (the result and comparison.json), stored (freshness, `comparisons`),
stats, resampling, multiplicity.
"""

from aligneval.compare.bases import BASES, RecordBasis, attack_correct_after, per_example_values
from aligneval.compare.comparison import COMPARISON_VERSION, Comparison, jsonable
from aligneval.compare.compute import SINGLE_SEED_NOTE, compare, run_plan
from aligneval.compare.models import (find_twins, group_of, lambda_in_name, lambdas, model_groups, pick_group, seed_of,
                                      twin_lambda, twin_name)
from aligneval.compare.plan import DEFAULT_RESAMPLES, MAX_RESAMPLES, Plan, plan
from aligneval.compare.refine import REFINE_BUDGET, REFINE_Z
from aligneval.compare.rows import ComparisonRow
from aligneval.compare.runs import (declared_primary, input_fingerprints, load, models_of, run_label, split_info,
                                    split_role)
from aligneval.compare.stored import FILE, comparisons, load_or_compare, read_fresh, read_sections, staleness

__all__ = [
    "BASES", "COMPARISON_VERSION", "Comparison", "ComparisonRow", "DEFAULT_RESAMPLES", "FILE", "MAX_RESAMPLES",
    "Plan", "REFINE_BUDGET", "REFINE_Z", "RecordBasis", "SINGLE_SEED_NOTE", "attack_correct_after", "compare",
    "comparisons", "declared_primary", "find_twins", "group_of", "input_fingerprints", "jsonable",
    "lambda_in_name", "lambdas", "load", "load_or_compare", "model_groups", "models_of", "per_example_values",
    "pick_group", "plan", "read_fresh", "read_sections", "run_label", "run_plan", "seed_of", "split_info",
    "split_role", "staleness", "twin_lambda", "twin_name",
]
