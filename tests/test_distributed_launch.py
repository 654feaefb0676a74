"""Two real processes (torch.distributed over gloo, on the CPU) on tiny models, started the two ways a
user would: `accelerate launch ... -m aligneval` and aligneval's `--num-processes 2` shortcut.

- `run`: predictions, records, curves, report rows, attack logs and shared-cache entries are identical
  to a one-process run (each rank runs whole batches of the one-process plan, with the same thread
  count, so the numbers are bit-identical, not only within 1e-6);
- `attack`: per-example outcomes equal a one-process run, also when a one-process run is killed and
  resumed with two processes, and when a two-process run is killed and resumed with one; no
  finished example is lost or redone.

Every process gets one torch thread (OMP_NUM_THREADS=1), as the one-process reference has."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import pytest

from aligneval import distributed
from tests.scripts import load_script
from tests.tiny import make_tiny_pair
from tests.tiny_attack import make_trained_tiny_model, write_attack_data
from tests.tiny_eval import SPEC, write_eval_fixture

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

ATTACK_SPEC = SPEC + """
[suites.adversarial]
recipes = ["pruthi"]
num_examples = 4
query_budget = 30
examples = "all"
"""


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               ALIGNEVAL_CACHE=str(cache), OMP_NUM_THREADS="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    return env


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()[1:]]


def _strip(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


@pytest.fixture(autouse=True)
def _one_process_state(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    distributed._reset_for_tests()
    from aligneval.attack import recipes

    recipes.network_available.cache_clear()
    yield
    distributed._reset_for_tests()


def test_run_under_accelerate_launch_equals_one_process(tmp_path, monkeypatch):
    from aligneval.predict import read_predictions
    from aligneval.runner import run

    models = make_tiny_pair(tmp_path / "models")  # also sets this process to one torch thread
    spec = write_eval_fixture(tmp_path / "data", spec=ATTACK_SPEC)
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "cache1"))
    run(spec, {k: str(v) for k, v in models.items()}, tmp_path / "one", progress=False)

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(distributed.free_port()),
           "-m", "aligneval", "run", str(spec), "--model", f"baseline={models['baseline']}",
           "--model", f"aligned={models['aligned']}", "--out", str(tmp_path / "two"), "--no-progress"]
    proc = subprocess.run(cmd, env=_env(tmp_path / "cache2"), capture_output=True, text=True, cwd=ROOT,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("wrote ") == 1  # only the main process prints

    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["environment"]["processes"] == 1 and two["environment"]["processes"] == 2
    assert two["records"] == one["records"] and two["curves"] == one["curves"]
    assert two["examples"] == one["examples"] and two["data"] == one["data"] and two["models"] == one["models"]
    assert any(r["metric"] == "pruthi:accuracy_under_attack" and r["n"] == 4 for r in two["records"])

    # the same files, and nothing else (no rank parts, no temp files, nothing from rank 1)
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    for model in models:
        for split in ("dev", "test", "shifted"):
            p1, m1 = read_predictions(tmp_path / "one" / "predictions" / model / f"{split}.parquet")
            p2, m2 = read_predictions(tmp_path / "two" / "predictions" / model / f"{split}.parquet")
            assert p2.ids == p1.ids and np.array_equal(p2.labels, p1.labels) and m2 == m1
            assert np.array_equal(p2.probs, p1.probs)  # bit-identical, which implies within 1e-6
        log = Path("attacks") / model / "pruthi.jsonl"
        assert _strip(_rows(tmp_path / "two" / log)) == _strip(_rows(tmp_path / "one" / log))
    # shared-cache entries: the same keys with the same numbers
    assert _files(tmp_path / "cache2") == _files(tmp_path / "cache1") and _files(tmp_path / "cache1")
    for name in _files(tmp_path / "cache1"):
        c1, _ = read_predictions(tmp_path / "cache1" / name)
        c2, _ = read_predictions(tmp_path / "cache2" / name)
        assert np.array_equal(c1.probs, c2.probs) and c1.ids == c2.ids


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the command and the worker processes it started (they run in their own sessions)."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for p in [psutil.Process(proc.pid)] + family if proc.poll() is None else family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(family, timeout=30)


def _finished(folder: Path) -> dict[str, dict]:
    """Rows on disk now (main log and rank parts), complete lines only."""
    rows: dict[str, dict] = {}
    for path in sorted(folder.glob("pruthi*.jsonl")):
        for line in path.read_text().split("\n")[1:-1]:
            row = json.loads(line)
            rows[row["id"]] = row
    return rows


def _start_and_kill(cmd: list[str], env: dict, log_dir: Path, at_least: int = 3) -> dict[str, dict]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if log_dir.is_dir() and len(_finished(log_dir)) >= at_least:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the attack finished before it could be killed"
    finally:
        _kill_tree(proc)
    return _finished(log_dir)


def test_attack_outcomes_match_one_process_across_kills_and_process_counts(tmp_path, monkeypatch):
    from aligneval.cli import main

    model = make_trained_tiny_model(tmp_path, seed=0)
    data = write_attack_data(tmp_path / "data.jsonl", n=30, seed=21)
    args = ["attack", "--model", f"baseline={model}", "--data", str(data), "--recipe", "pruthi",
            "-n", "14", "-q", "80", "--examples", "all"]
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "cache"))
    env = _env(tmp_path / "cache")
    assert main(args + ["--out", str(tmp_path / "ref")]) == 0  # one process, uninterrupted
    ref_rows = _rows(tmp_path / "ref" / "attacks" / "baseline" / "pruthi.jsonl")
    ref_doc = json.loads((tmp_path / "ref" / "attack_results.json").read_text())
    assert len(ref_rows) == 14 and len({r["outcome"] for r in ref_rows}) > 1  # the attacks do something

    def check(out: Path, kept: dict[str, dict]) -> None:
        rows = _rows(out / "attacks" / "baseline" / "pruthi.jsonl")
        ids, ref_ids = [r["id"] for r in rows], [r["id"] for r in ref_rows]
        assert len(ids) == len(set(ids)) == 14  # nothing lost, nothing twice
        # the rows finished before a kill come first, then the rest, each part in the example order
        assert ids == [i for i in ref_ids if i in kept] + [i for i in ref_ids if i not in kept]
        by_id = {r["id"]: r for r in rows}
        for i, row in kept.items():  # finished before the kill: kept as written (seconds too), not redone
            assert by_id[i] == row
        assert _strip(rows) == _strip(ref_rows)
        assert json.loads((out / "attack_results.json").read_text())["records"] == ref_doc["records"]
        assert not list((out / "attacks" / "baseline").glob("pruthi.rank*.jsonl"))

    # 1. two processes from the start (the --num-processes shortcut), uninterrupted
    two = subprocess.run([sys.executable, "-m", "aligneval", *args, "--out", str(tmp_path / "two"),
                          "--num-processes", "2"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    check(tmp_path / "two", {})  # merged in the example order of one process

    # 2. one process killed mid-run, resumed with two
    out = tmp_path / "one-then-two"
    kept = _start_and_kill([sys.executable, "-m", "aligneval", *args, "--out", str(out)], env,
                           out / "attacks" / "baseline")
    assert 3 <= len(kept) < 14
    again = subprocess.run([sys.executable, "-m", "aligneval", *args, "--out", str(out), "--num-processes", "2"],
                           env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    check(out, kept)

    # 3. two processes killed mid-run (their parts hold the finished rows), resumed with one
    out = tmp_path / "two-then-one"
    kept = _start_and_kill([sys.executable, "-m", "aligneval", *args, "--out", str(out), "--num-processes", "2"],
                           env, out / "attacks" / "baseline")
    assert 3 <= len(kept) < 14
    assert list((out / "attacks" / "baseline").glob("pruthi.rank*.jsonl"))  # killed before the merge
    assert main(args + ["--out", str(out)]) == 0
    check(out, kept)


def test_num_processes_job_reports_the_main_process_error(tmp_path):
    """A usage error found inside the launched processes (every rank finds it) is one line, exit 2."""
    models = make_tiny_pair(tmp_path / "models")
    spec = write_eval_fixture(tmp_path / "data", n=12)
    (tmp_path / "data" / "test.jsonl").write_text("")  # an empty split: a data error in every rank
    proc = subprocess.run([sys.executable, "-m", "aligneval", "run", str(spec), "--model",
                           f"baseline={models['baseline']}", "--out", str(tmp_path / "run"), "--no-progress",
                           "--num-processes", "2"], env=_env(tmp_path / "cache"), capture_output=True,
                          text=True, cwd=ROOT, timeout=900)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode not in (0, 1, 70), proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (tmp_path / "run" / "results.json").exists()


def test_scale_out_benchmark_smoke(capsys):
    """benchmarks/scale_out.py --small runs end to end; both sides produce the same outputs and the
    last line is the contract (no timing is asserted)."""
    bench = load_script("benchmarks/scale_out.py")
    assert bench.main(["--small", "--predict-examples", "48", "--attack-examples", "4", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    last, detail = json.loads(lines[-1]), json.loads(lines[-2])
    assert list(last) == ["attack_speedup", "predict_speedup", "align_speedup"]
    assert last["align_speedup"] > 0 and detail["align"]["processes"] == [1, 2]
    assert last["attack_speedup"] > 0 and last["predict_speedup"] > 0
    assert detail["predict"]["examples"] == 48 and detail["predict"]["labels_equal"]
    assert detail["predict"]["max_abs_prob_diff"] == 0.0  # --small: same threads per process on both sides
    assert detail["attack"]["examples"] == 4 and detail["attack"]["outcomes_equal"]


def test_align_in_two_processes_keeps_the_pair_contract(tmp_path):
    """`align --num-processes 2`: each process trains on its shard of the one seeded batch order;
    at λ = 0 the twin is bit-identical to the baseline, at λ > 0 it differs; only the main process
    wrote (one log, one card, no temporary folder left), and the card says two processes."""
    from safetensors.torch import load_file

    from tests.tiny import make_tiny_model, write_fixture

    model = make_tiny_model(tmp_path)
    train = write_fixture(tmp_path, n=64)
    base_args = [sys.executable, "-m", "aligneval", "align", "--model", str(model), "--train", str(train),
                 "--max-steps", "4", "--batch-size", "8", "--lr", "1e-3", "--no-progress", "--num-processes", "2"]
    env = _env(tmp_path / "cache")
    for lam, variant in (("0", "gan"), ("0.5", "mmd")):
        out = tmp_path / f"pair-{variant}"
        proc = subprocess.run([*base_args, "--variant", variant, "--lambda", lam, "--out", str(out)], env=env,
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        base = load_file(str(out / "baseline" / "model.safetensors"))
        twin = load_file(str(out / "aligned" / "model.safetensors"))
        same = all(torch.equal(base[n], twin[n]) for n in base)
        assert same == (lam == "0"), (variant, lam)
        card = json.loads((out / "aligned" / "alignment.json").read_text())
        assert card["hyperparameters"]["processes"] == 2 and card["steps"] == 4
        assert len((out / "aligned" / "train_log.jsonl").read_text().splitlines()) == 4
        assert sorted(p.name for p in out.iterdir()) == ["aligned", "baseline"]


SHUTDOWN_PROBE = """
import os, sys
from aligneval import distributed
from transformers import AutoModelForSequenceClassification

rt = distributed.state()  # the group first, then a transformers model, as every aligneval command does
AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
rt.gather(rt.rank)
threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
distributed.shutdown()
print(f"rank {rt.rank} threads {before} -> {threads()}")
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_shutdown_joins_the_gloo_threads_before_interpreter_exit(tmp_path):
    """The cause of the 'terminate called without an active exception' aborts after finished work (a gloo
    thread outliving the interpreter), checked directly: after `shutdown` the group's threads are gone,
    also once transformers 5 has imported torch.distributed.fsdp."""
    model = make_trained_tiny_model(tmp_path, seed=0, steps=1)
    probe = tmp_path / "probe.py"
    probe.write_text(SHUTDOWN_PROBE)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(distributed.free_port()), str(probe), str(model)]
    proc = subprocess.run(cmd, env=dict(_env(tmp_path / "cache"), PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = sorted(line.split(" threads ")[1] for line in proc.stdout.splitlines() if " threads " in line)
    assert len(counts) == 2
    for count in counts:
        before, after = (int(x) for x in count.split(" -> "))
        assert after <= before - 3, counts  # gloo's two worker threads and its transport loop are joined
