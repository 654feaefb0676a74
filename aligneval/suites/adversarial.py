"""The adversarial suite: TextAttack recipes against every model of a run, on one shared example list.

Settings (spec `[suites.adversarial]`): recipes, num_examples, seed (default: the run's), query_budget,
time_budget_s, examples ("correct-by-all" | "all"), split (default: the run's test split),
report_examples. See docs/adversarial.md for the denominators and resuming.
"""

from __future__ import annotations

from typing import Any

from aligneval.attack.runner import AttackSettings, ModelHandle, run_attacks
from aligneval.errors import UsageError
from aligneval.records import SuiteOutput
from aligneval.registry import did_you_mean
from aligneval.suites.base import SuiteContext, register_suite

DEFAULTS: dict[str, Any] = {
    "recipes": ["deepwordbug"],
    "num_examples": 100,
    "seed": None,
    "query_budget": 200,
    "time_budget_s": None,
    "examples": "correct-by-all",
    "split": None,
    "report_examples": 50,
}


def _split(ctx: SuiteContext, wanted: str | None) -> str:
    if wanted:
        if wanted not in ctx.examples:
            known = sorted(ctx.examples)
            raise UsageError(f"adversarial: no split '{wanted}'{did_you_mean(wanted, known)}; "
                             f"splits: {', '.join(known)}")
        return wanted
    tests = [s for s in ctx.splits_with_role("test") if s in ctx.examples]
    if not tests:
        if "test" in ctx.examples:
            return "test"
        raise UsageError("adversarial: the run has no test split; set split = \"<name>\"")
    return tests[0]


def validate(settings: dict[str, Any], roles: dict[str, str]) -> None:
    """Spec-time checks: recipe names, modes, budgets, the split (no model is loaded)."""
    merged = {**DEFAULTS, **settings}
    split = merged.pop("split")
    merged.pop("seed")
    if split is not None and roles and split not in roles:
        raise UsageError(f"split: no split '{split}'{did_you_mean(split, sorted(roles))}")
    if merged["time_budget_s"] is not None and merged["time_budget_s"] <= 0:
        raise UsageError(f"time_budget_s must be positive, not {merged['time_budget_s']}")
    AttackSettings.from_dict(merged)


@register_suite("adversarial", description="TextAttack recipes on the same examples for every model: "
                "accuracy under attack, success rate, perturbation, queries",
                defaults=DEFAULTS, needs_models=True, validate=validate, sharded=True)
def adversarial(ctx: SuiteContext, settings: dict[str, Any]) -> SuiteOutput:
    merged = {**DEFAULTS, **settings}
    split = _split(ctx, merged.pop("split"))
    seed = merged.pop("seed")
    run = ctx.settings or {}
    attack_settings = AttackSettings.from_dict({
        **merged, "seed": ctx.seed if seed is None else int(seed),
        "max_length": int(run.get("max_length", 256)), "batch_size": int(run.get("batch_size", 32)),
    })
    handles = {name: ModelHandle(name, info.path, info.weights_sha256, attack_settings.max_length,
                                 attack_settings.batch_size) for name, info in ctx.models.items()}
    predictions = {name: ctx.predictions[(name, split)] for name in ctx.models if (name, split) in ctx.predictions}
    return run_attacks(handles, ctx.examples[split], split, attack_settings, ctx.run_dir,
                       predictions if len(predictions) == len(handles) else None)
