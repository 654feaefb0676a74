"""Per-example attack rows -> records (pure), by the recipe's goal. Every record states its
denominator in `extra`.

Flip-label goals (TextAttack's classification goals): "skipped" = the model was already wrong on the
gold label (no attack), "failed" = correct and the attack did not flip it within the budget,
"succeeded" = flipped. Accuracy under attack = failed / examples (gold labels, the same denominator
for every model).

Keep-prediction goals (input reduction): "skipped" = already wrong, otherwise the search deleted
words while keeping the prediction ("maximized", or "succeeded" when it got down to its target
length). Records: the share of words removed with the prediction kept, the words left, how often the
reduced input kept the prediction. Never accuracy under attack or success rate: nothing was flipped.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from aligneval.attack.goals import FLIP, KEEP, Goal, goal_of
from aligneval.records import Record

OUTCOMES = ("succeeded", "failed", "skipped")
SUITE = "adversarial"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


RecordMaker = Callable[..., Record]


def _flip_records(done: list[dict[str, Any]], rec: RecordMaker) -> list[Record]:
    n = len(done)
    counts = {o: sum(r["outcome"] == o for r in done) for o in OUTCOMES}
    attacked = counts["succeeded"] + counts["failed"]
    out = [
        rec("accuracy_under_attack", counts["failed"] / n if n else None, n,
            "examples in the list (gold labels; skipped = already wrong)", True, (0.0, 1.0)),
        rec("attack_success_rate", counts["succeeded"] / attacked if attacked else None, attacked,
            "attacked examples (succeeded + failed; skipped excluded)", False, (0.0, 1.0)),
    ]
    for o in OUTCOMES:
        out.append(rec(o, float(counts[o]), n, "count among the examples in the list", None, (0.0, None)))
    out.append(rec("perturbed_word_pct",
                   _mean([r["perturbed_word_pct"] for r in done if r["outcome"] == "succeeded"]),
                   counts["succeeded"], "succeeded attacks", True, (0.0, 100.0)))
    out.append(rec("mean_queries",
                   _mean([float(r["num_queries"]) for r in done if r["outcome"] != "skipped"]),
                   attacked, "attacked examples (succeeded + failed)", True, (0.0, None)))
    return out


def words_left(row: dict[str, Any]) -> int | None:
    """Words of the reduced input (logged as `words_after`; None for a row from before it was logged)."""
    value = row.get("words_after")
    return None if value is None else int(value)


def _keep_records(done: list[dict[str, Any]], rec: RecordMaker) -> list[Record]:
    """Input reduction: of the examples the model got right (not skipped), how far each was reduced
    with the prediction kept. A reduced input whose prediction changed counts as nothing removed."""
    n = len(done)
    reduced = [r for r in done if r["outcome"] != "skipped"]
    kept = [r for r in reduced if int(r["perturbed_pred"]) == int(r["original_pred"])]
    measured = [r for r in reduced if words_left(r) is not None and r.get("words")]
    kept_ids = {r["id"] for r in kept}
    removed = [100.0 * (r["words"] - words_left(r)) / r["words"] if r["id"] in kept_ids else 0.0 for r in measured]
    counts = {o: sum(r["outcome"] == o for r in done) for o in ("maximized", *OUTCOMES)}
    what = "reduced examples (the model right before; skipped excluded)"
    out = [
        rec("words_removed_pct", _mean(removed), len(measured),
            f"{what}: 100 x words deleted / words, with the prediction kept", None, (0.0, 100.0)),
        rec("words_left", _mean([float(words_left(r)) for r in measured]), len(measured),
            f"{what}: words in the reduced input", None, (0.0, None)),
        rec("prediction_kept_rate", len(kept) / len(reduced) if reduced else None, len(reduced),
            f"{what}: the reduced input keeps the original prediction", None, (0.0, 1.0)),
    ]
    for o, c in counts.items():
        out.append(rec(o, float(c), n, "count among the examples in the list", None, (0.0, None)))
    out.append(rec("mean_queries", _mean([float(r["num_queries"]) for r in reduced]), len(reduced),
                   "reduced examples (skipped excluded)", True, (0.0, None)))
    return out


RECORDS: dict[str, Callable[[list[dict[str, Any]], RecordMaker], list[Record]]] = {
    FLIP.name: _flip_records, KEEP.name: _keep_records}


def scope_records(rows: Sequence[dict[str, Any]], ids: Sequence[str], *, prefix: str, split: str,
                  model: str, extra: dict[str, Any], scope_note: str, goal: Goal | None = None) -> list[Record]:
    """Records named `<prefix>:<metric>` over the rows whose id is in `ids` (in that order), as the
    recipe's goal defines them (default: the goal of the recipe named by `prefix`)."""
    goal = goal or goal_of(prefix.split(":")[-1])
    by_id = {r["id"]: r for r in rows}
    done = [by_id[i] for i in ids if i in by_id]
    n = len(done)
    base = dict(extra, examples=len(ids), attacked_examples=n, complete=n == len(ids),
                not_attacked=len(ids) - n, scope=scope_note, goal=goal.name)

    def rec(metric: str, value: float | None, denom: int, denom_text: str, hib: bool | None,
            rng: tuple[float | None, float | None] = (None, None)) -> Record:
        return Record(SUITE, split, model, f"{prefix}:{metric}", value, denom, hib, rng, "attack", None,
                      dict(base, denominator=denom_text))

    return RECORDS[goal.name](done, rec)


def unavailable_record(recipe: str, split: str, model: str, reason: str, extra: dict[str, Any]) -> Record:
    """What a recipe that cannot run here leaves in the results: no value, the reason."""
    goal = goal_of(recipe)
    hib = True if goal is FLIP else None
    return Record(SUITE, split, model, f"{recipe}:{goal.headline}", None, 0, hib,
                  (0.0, 1.0) if goal is FLIP else (0.0, 100.0), "attack", None,
                  dict(extra, unavailable=reason, goal=goal.name))
