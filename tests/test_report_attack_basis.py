"""The "Accuracy under attack" chart puts clean and attacked accuracy on one basis: the attacked
examples. Its clean bar is 1 - skipped / examples of the attack records, not the split's accuracy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aligneval.attack.summary import scope_records
from aligneval.report import displays as D


def _rows(outcomes):
    return [{"id": f"e{i}", "outcome": o, "perturbed_word_pct": 10.0, "num_queries": 5} for i, o in enumerate(outcomes)]


def test_clean_bar_is_accuracy_on_the_attacked_examples():
    from aligneval.records import Record

    recs = []
    outcomes = {"baseline": ["skipped", "failed", "succeeded", "failed"],
                "aligned": ["failed", "failed", "succeeded", "skipped"]}
    for model, outs in outcomes.items():
        rows = _rows(outs)
        recs += scope_records(rows, [r["id"] for r in rows], prefix="deepwordbug", split="test", model=model,
                              extra={"recipe": "deepwordbug"}, scope_note="x")
        # the whole split's accuracy differs: the chart must not use it
        recs.append(Record("accuracy", "test", model, "accuracy", 0.81, 1000, True))
    att = D.AttackDisplay.from_results(SimpleNamespace(records=recs), ["baseline", "aligned"])
    for model, outs in outcomes.items():
        assert att.clean[model] == pytest.approx(1 - outs.count("skipped") / len(outs))
        assert att.under_attack[model]["deepwordbug"] == pytest.approx(outs.count("failed") / len(outs))
        # on one basis: attacked accuracy never exceeds clean accuracy on the same examples
        assert att.under_attack[model]["deepwordbug"] <= att.clean[model]
