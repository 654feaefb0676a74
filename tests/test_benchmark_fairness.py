"""The benchmarks' sides are timed fairly: attack_speed interleaves its two sides over rounds, the
order swapped each round, and sums each side's rounds (the sides stubbed here: no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts import load_script


def _load(name: str):
    return load_script(f"benchmarks/{name}.py", f"{name}_fairness")


def test_attack_speed_interleaves_rounds(tmp_path, monkeypatch):
    bench = _load("attack_speed")
    calls = []
    seconds = {"aligneval": iter([2.0, 4.0, 6.0]), "cli": iter([10.0, 20.0, 30.0])}

    def ours(model, jsonl, n, budget, out, recipe="deepwordbug"):
        calls.append(("aligneval", out.name))
        return next(seconds["aligneval"]), {"a": "failed", "b": "succeeded"}

    def cli(model, module, ids, budget, out_csv, ta_cache, recipe="deepwordbug", per_example=False, workers=1):
        calls.append(("cli", out_csv.name))
        return next(seconds["cli"]), {"a": "failed", "b": "maximized"}

    monkeypatch.setattr(bench, "run_aligneval", ours)
    monkeypatch.setattr(bench, "run_textattack_cli", cli)
    monkeypatch.setattr(bench, "write_inputs", lambda examples, folder: (folder / "x.jsonl", folder / "x.py"))
    result = bench.compare(Path("model"), [("a", "t", 0), ("b", "u", 1)], 10, tmp_path, rounds=3)
    # fresh outputs every round (no resuming), the order swapped each round
    assert calls == [("aligneval", "aligneval-0"), ("cli", "cli-0.csv"), ("cli", "cli-1.csv"),
                     ("aligneval", "aligneval-1"), ("aligneval", "aligneval-2"), ("cli", "cli-2.csv")]
    assert result["vs_textattack_cli"] == pytest.approx(12.0 / 60.0)
    assert result["round_ratios"] == [0.2, 0.2, 0.2] and result["rounds"] == 3
    assert result["outcome_agreement"] == 0.5
    assert result["outcomes"]["textattack_cli"]["maximized"] == 1


def test_attack_speed_refuses_rounds_that_disagree(tmp_path, monkeypatch):
    bench = _load("attack_speed")
    outcomes = iter([{"a": "failed"}, {"a": "succeeded"}])
    monkeypatch.setattr(bench, "run_aligneval", lambda *a, **k: (1.0, next(outcomes)))
    monkeypatch.setattr(bench, "run_textattack_cli", lambda *a, **k: (1.0, {"a": "failed"}))
    monkeypatch.setattr(bench, "write_inputs", lambda examples, folder: (folder / "x.jsonl", folder / "x.py"))
    with pytest.raises(RuntimeError, match="round 1"):
        bench.compare(Path("model"), [("a", "t", 0)], 10, tmp_path, rounds=2)
