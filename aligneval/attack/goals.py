"""What an attack recipe's results mean: its goal function decides the outcomes and the metrics.

Most recipes try to flip the prediction (TextAttack's untargeted / targeted classification goals):
their results are succeeded (flipped), failed (survived) or skipped (already wrong), and accuracy
under attack and success rate follow. Input reduction (Feng et al. 2018) deletes words while
*keeping* the prediction; TextAttack calls its results "Maximized". Reading those as "succeeded"
reported accuracy under attack 0 for a model right on every reduced input, so a keep-prediction goal
has its own metrics (how many words can go with the prediction kept) and never accuracy or success
rate.

The recipe -> goal mapping lives here (not in the recipe table) and a test checks it against the
goal function TextAttack actually builds for every recipe that runs offline.
"""

from __future__ import annotations

from dataclasses import dataclass

from aligneval.registry import Registry


@dataclass(frozen=True)
class Goal:
    name: str
    textattack_goals: tuple[str, ...]  # TextAttack goal-function class names with this goal
    outcomes: dict[str, str]  # TextAttack AttackResult class name -> outcome written to the log
    headline: str  # the metric a recipe that cannot run leaves (value None, the reason)
    description: str


GOALS: Registry[Goal] = Registry("attack goal")
FLIP = Goal(
    "flip-label", ("UntargetedClassification", "TargetedClassification"),
    {"SuccessfulAttackResult": "succeeded", "FailedAttackResult": "failed", "SkippedAttackResult": "skipped"},
    "accuracy_under_attack", "change the prediction: accuracy under attack, success rate, words perturbed")
KEEP = Goal(
    "keep-prediction", ("InputReduction",),
    {"MaximizedAttackResult": "maximized", "SuccessfulAttackResult": "succeeded", "FailedAttackResult": "failed",
     "SkippedAttackResult": "skipped"},
    "words_removed_pct", "delete words while keeping the prediction: share of words removable, words left")
for _goal in (FLIP, KEEP):
    GOALS.add(_goal.name, _goal)

RECIPE_GOALS: dict[str, str] = {"input-reduction": KEEP.name}  # every other recipe flips the label


def goal_of(recipe: str) -> Goal:
    """The goal of recipe `recipe` (the recipe name without any `all:` scope prefix)."""
    return GOALS.get(RECIPE_GOALS.get(recipe, FLIP.name))


def outcome(goal: Goal, result_class: str) -> str:
    """The log outcome for a TextAttack result of class `result_class` under `goal`."""
    try:
        return goal.outcomes[result_class]
    except KeyError:
        raise ValueError(f"a {goal.name} attack returned a {result_class}, which it does not define") from None
