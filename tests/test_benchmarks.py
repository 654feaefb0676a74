"""The report-speed benchmark runs end to end on a small synthetic run (no timing is asserted): its
side-by-side check of the vectorized bootstrap against the metric per resample passes, and the
--json line carries the contract's fields."""

from __future__ import annotations

import json

import pytest

from aligneval.versions import cpu_description
from tests.scripts import load_script


def _load(name: str):
    return load_script(f"benchmarks/{name}.py")


def test_report_speed_benchmark_runs_and_reports_json(tmp_path, capsys):
    bench = _load("report_speed")
    assert bench.main(["--n", "3000", "--resamples", "40", "--plain", "3", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"seconds", "score", "compare", "report", "n_per_model", "resamples", "bootstrapped", "probe_seconds",
            "steal_seconds"} <= set(doc)
    assert doc["probe_seconds"] > 0
    assert doc["cpu"] == cpu_description()
    assert doc["n_per_model"] == 3000 and doc["resamples"] == 40 and doc["bootstrapped"] == 38
    assert doc["plain"]["statistics"] == 32 and doc["plain"]["examples"] == 1800
    assert (tmp_path / "report" / "report.html").is_file()


def test_align_overhead_benchmark_runs_the_real_step(tmp_path, capsys):
    """The benchmark times train.py's own Game step on a tiny model (no timing asserted)."""
    from tests.tiny import make_tiny_model

    bench = _load("align_overhead")
    folder = make_tiny_model(tmp_path)
    assert bench.main(["--model", str(folder), "--steps", "1", "--batch-size", "2", "--length", "8",
                       "--threads", "1", "--variants", "gan,mmd,mmd:estimator=linear", "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"gan", "mmd", "mmd:estimator=linear"} and all(v > 0 for v in last.values())
    assert bench.main(["--model", str(folder), "--variants", "gam", "--json"]) == 2


def test_bracketed_ratio_divides_each_round_by_its_own_baselines():
    """Hand-computed: rounds (aligned, start, end) = (1.2, 1.0, 1.0), (2.2, 2.0, 2.4), (0.9, 1.0, 0.8)
    give 1.2, 1.0, 1.0 -> median 1.0; a ratio of medians would say 1.2 / 1.0 = 1.2."""
    bench = _load("align_overhead")
    assert bench.bracketed_ratio([1.2, 2.2, 0.9], [1.0, 2.0, 1.0], [1.0, 2.4, 0.8]) == pytest.approx(1.0)
    assert bench.bracketed_ratio([3.0], [1.0], [2.0]) == pytest.approx(2.0)


@pytest.mark.slow
def test_predict_throughput_runs_each_side_in_its_own_process():
    """The real script on the demo model, as a user runs it (no timing asserted): four spawned sides,
    labels identical across them, the --json contract's fields."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "benchmarks/predict_throughput.py", "--n", "48", "--rounds", "2", "--json"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["processes"] == "one per side" and doc["identical_labels"] and doc["n"] == 48
    assert {"vs_padded_loop", "vs_pipeline", "vs_pipeline_batched"} <= set(doc)
    assert doc["cpu"] == cpu_description()
    assert set(doc["examples_per_s"]) == {"aligneval", "padded_loop", "pipeline", "pipeline_batched"}
