"""Scale-out: the same prediction, attack and training work in one process and in two, side by side.

`aligneval run` (prediction), `aligneval attack` and `aligneval align`, each in one process and in
two (`--num-processes 2`: accelerate launch, gloo on the CPU).

    python benchmarks/scale_out.py [--small] [--predict-examples N] [--attack-examples N]
                                   [--query-budget Q] [--recipe deepwordbug] [--json]

Default model: the real all-MiniLM-L6-v2 encoder briefly fine-tuned on the packaged movie snippets
(benchmarks/attack_speed.py's `build_minilm`, 1-2 min); data: the packaged sentiment sentences
(movie test, Amazon, tweets, NYT). `--small` uses a tiny BERT trained on fixture sentences and a few
examples and no all-threads side (a smoke run for tests: the outputs must be bit-identical; its
times mean nothing).

Every command runs as a fresh subprocess, as a user would start it (imports, process start-up and
accelerate's rendezvous included), with the prediction cache off and a fresh output folder. Each task
runs three times:
  1 process on every core's threads (torch's default: the same command without --num-processes)
      vs 2 processes (`--num-processes 2`, which gives each process its share of the cores)
      (`speedup_plain`, the headline): what a user gets from adding --num-processes 2 on this
      machine; torch's intra-op threads already put the model's matmuls on both cores, so two
      processes gain mostly on the single-threaded rest, and its sums round differently (its attack
      outcomes may differ on a few examples; counted);
  1 process on one core's threads  vs  the same 2 processes  (`speedup`, one process per core):
      the same work per process, so prediction and attack outputs must be identical (checked:
      predictions bit-identical, attack outcomes equal); what the scale-out gives where each
      process has cores of its own.

The last line with --json is exactly
    {"attack_speedup": ..., "predict_speedup": ..., "align_speedup": ...}
(the headline: wall time of the plain command ÷ wall time with --num-processes 2; with --small,
which has no plain side, the one-process-per-core figure, and `headline` in the line before says
which). `align` fine-tunes the pair (baseline + mmd twin at λ = 0.1) for one epoch over the same
sentences: one process takes every batch, two processes each take every other batch of the same
seeded order (data parallel: the same examples, half the optimizer steps per process at twice the
global batch). That is not the same optimization, so align's outputs are not identical across
process counts and are not compared; only its time is. The line before it holds the measured seconds and the checks, and (unless
--no-fixed-cost) each side's fixed cost, timed by re-running the same command on its finished output
(start-up, launch and scoring; no model runs), with the speed-up of the remaining work.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from aligneval.artifacts import read_json_lines  # noqa: E402

DATA_SPLITS = {"test": "movie_test", "amazon": "amazon", "tweets": "tweets", "nyt": "nyt"}


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               ALIGNEVAL_CACHE="off", OMP_NUM_THREADS=str(threads))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(name, None)
    return env


def timed(cmd: list[str], threads: int) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def write_predict_spec(folder: Path, n: int, small: bool) -> Path:
    """A spec whose splits hold about `n` examples in all (the packaged data, or fixture sentences)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ['name = "scale-out"', "seed = 0", "max_length = 64", "batch_size = 64", ""]
    if small:
        sys.path.insert(0, str(ROOT))
        from tests.tiny import write_fixture

        write_fixture(folder, n=n, name="test", seed=3)
        lines += ["[splits.test]", 'role = "test"', 'path = "test.jsonl"', 'id_column = "id"', ""]
    else:
        import importlib.resources

        root = importlib.resources.files("aligneval").joinpath("data/sentiment")
        left = n
        for split, name in DATA_SPLITS.items():
            if left <= 0:
                break
            rows = read_json_lines(str(root.joinpath(f"{name}.jsonl.gz")))[:left]
            left -= len(rows)
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                   encoding="utf-8")
            role = "test" if split == "test" else "ood"
            lines += [f"[splits.{split}]", f'role = "{role}"', f'path = "{split}.jsonl"', 'id_column = "id"', ""]
    lines += ["[suites.accuracy]"]
    path = folder / "spec.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def predict_outputs(run_dir: Path) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from aligneval.predict import read_predictions

    out = {}
    for path in sorted((run_dir / "predictions").rglob("*.parquet")):
        preds, _ = read_predictions(path)
        out[str(path.relative_to(run_dir))] = (preds.ids, np.asarray(preds.probs))
    return out


def attack_outcomes(out: Path, recipe: str) -> dict[str, dict]:
    rows = read_json_lines(out / "attacks" / "m" / f"{recipe}.jsonl")[1:]
    return {r["id"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


def _speedup(one: float, two: float) -> float:
    return round(one / two, 3)


def measure(work: Path, model: Path, args: argparse.Namespace) -> dict:
    """Each task three times: one process on one core's threads, two processes on one core's threads
    each (the same per-process work: outputs must be identical), and one process on every core's
    threads (torch's default here; its float sums round differently, so its outputs may differ)."""
    import numpy as np

    cores = os.cpu_count() or 2
    core = max(1, cores // 2)  # threads per process, one core's share, on both equal-work sides
    whole = None if args.small else cores  # --small: no all-threads side (a smoke run)
    aligneval = [sys.executable, "-m", "aligneval"]
    two = ["--num-processes", "2"]

    def sides(cmd: list[str], name: str, fixed: dict | None = None) -> dict:
        t = {"seconds_1": timed(cmd + [str(work / f"{name}-1")], core),
             "seconds_2": timed(cmd + [str(work / f"{name}-2")] + two, core)}
        if whole:
            t["seconds_1_all_threads"] = timed(cmd + [str(work / f"{name}-w")], whole)
        if fixed is not None:  # the same commands again on their finished folders: start-up and scoring only
            fixed[name] = (timed(cmd + [str(work / f"{name}-1")], core), timed(cmd + [str(work / f"{name}-2")] + two, core))
        t = {k: round(v, 2) for k, v in t.items()}
        t["speedup"] = _speedup(t["seconds_1"], t["seconds_2"])
        if whole:
            t["speedup_vs_all_threads"] = _speedup(t["seconds_1_all_threads"], t["seconds_2"])
            t["speedup_plain"] = t["speedup_vs_all_threads"]
        return t

    fixed: dict | None = {} if args.fixed_cost else None
    spec = write_predict_spec(work / "predict-data", args.predict_examples, args.small)
    predict = sides(aligneval + ["run", str(spec), "--model", f"m={model}", "--no-progress", "--out"], "predict", fixed)
    one, two_ = predict_outputs(work / "predict-1"), predict_outputs(work / "predict-2")
    same_ids = one.keys() == two_.keys() and all(one[k][0] == two_[k][0] for k in one)
    predict["examples"] = sum(len(v[0]) for v in one.values())
    predict["max_abs_prob_diff"] = max(float(np.abs(one[k][1] - two_[k][1]).max()) for k in one) if same_ids else None
    predict["labels_equal"] = same_ids and all(np.array_equal(one[k][1].argmax(1), two_[k][1].argmax(1)) for k in one)

    examples = _sibling("attack_speed").pick_examples(args.attack_examples * 2, seed=0, tiny=args.small)
    data = work / "attack.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t, "label": y}) + "\n" for i, t, y in examples))
    attack = sides(aligneval + ["attack", "--model", f"m={model}", "--data", str(data), "--recipe", args.recipe,
                                "-n", str(args.attack_examples), "-q", str(args.query_budget), "--examples", "all",
                                "--out"], "attack", fixed)
    a1, a2 = attack_outcomes(work / "attack-1", args.recipe), attack_outcomes(work / "attack-2", args.recipe)
    attack.update(examples=len(a1), recipe=args.recipe, query_budget=args.query_budget, outcomes_equal=a1 == a2,
                  outcomes={o: sum(r["outcome"] == o for r in a1.values()) for o in ("succeeded", "failed", "skipped")})
    if whole:
        aw = attack_outcomes(work / "attack-w", args.recipe)
        attack["all_threads_same_outcome"] = sum(aw[i]["outcome"] == a1[i]["outcome"] for i in a1)

    train = work / "align.jsonl"
    rows = _sibling("attack_speed").pick_examples(args.align_examples, seed=1, tiny=args.small)
    train.write_text("".join(json.dumps({"id": i, "text": t, "label": y}) + "\n" for i, t, y in rows))
    align = sides(aligneval + ["align", "--model", str(model), "--train", str(train), "--epochs", "1", "--batch-size",
                               "16", "--max-length", "64", "--variant", "mmd", "--lambda", "0.1", "--no-progress",
                               "--out"], "align")
    cards = [json.loads((work / f"align-{n}" / "aligned" / "alignment.json").read_text()) for n in (1, 2)]
    align.update(examples=len(rows), steps_per_process=[c["steps"] for c in cards],
                 processes=[c["hyperparameters"]["processes"] for c in cards])
    result = {"model": "tiny" if args.small else "minilm", "cores": cores, "threads_per_process": core,
              "predict": predict, "attack": attack, "align": align}
    if fixed:
        result["fixed_cost_s"] = {k: {"seconds_1": round(a, 2), "seconds_2": round(b, 2)} for k, (a, b) in fixed.items()}
        result["speedup_without_fixed_cost"] = {
            k: _speedup(task["seconds_1"] - fixed[k][0], task["seconds_2"] - fixed[k][1])
            for k, task in (("predict", predict), ("attack", attack)) if task["seconds_2"] > fixed[k][1]}
    key = "speedup_plain" if whole else "speedup"
    result["headline"] = ("plain command vs --num-processes 2" if whole
                          else "one process per core (--small has no plain side)")
    result.update(predict_speedup=predict[key], attack_speedup=attack[key], align_speedup=align[key],
                  align_outputs_compared=False)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="Tiny model and a few examples: a smoke run.")
    p.add_argument("--predict-examples", type=int, default=None, help="Examples predicted (default 11387; small 96).")
    p.add_argument("--attack-examples", type=int, default=None, help="Examples attacked (default 1000; small 6).")
    p.add_argument("--query-budget", type=int, default=None, help="Queries per example (default 200; small 40).")
    p.add_argument("--recipe", default="deepwordbug")
    p.add_argument("--align-examples", type=int, default=None, help="Sentences fine-tuned on (default 1024; small 64).")
    p.add_argument("--fixed-cost", action=argparse.BooleanOptionalAction, default=None,
                   help="Also time each command again on its finished output (start-up and scoring only); "
                        "default on, off with --small.")
    p.add_argument("--json", action="store_true", help="End with the one-line JSON contract.")
    args = p.parse_args(argv)
    args.predict_examples = args.predict_examples or (96 if args.small else 11387)
    args.attack_examples = args.attack_examples or (6 if args.small else 1000)
    args.query_budget = args.query_budget or (40 if args.small else 200)
    args.align_examples = args.align_examples or (64 if args.small else 1024)
    args.fixed_cost = (not args.small) if args.fixed_cost is None else args.fixed_cost
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        work = Path(tmp)
        bench = _sibling("attack_speed")
        model = bench.build_tiny(work / "model") if args.small else bench.build_minilm(work / "model")
        result = measure(work, model, args)
    last = {"attack_speedup": result["attack_speedup"], "predict_speedup": result["predict_speedup"],
            "align_speedup": result["align_speedup"]}
    if args.json:
        print(json.dumps(result))
        print(json.dumps(last))
    else:
        for name in ("predict", "attack", "align"):
            task = result[name]
            line = f"{name:>7}: "
            if "seconds_1_all_threads" in task:
                line += (f"plain command (1 process, all {result['cores']} cores' threads) "
                         f"{task['seconds_1_all_threads']} s vs --num-processes 2 {task['seconds_2']} s -> "
                         f"{task['speedup_plain']}x; ")
            line += (f"one process per core: 1 process on one core's threads {task['seconds_1']} s vs 2 processes "
                     f"-> {task['speedup']}x")
            print(line)
        print(textwrap.dedent(f"""\
            predict: {result['predict']['examples']} examples, labels equal: {result['predict']['labels_equal']},
                     max |dp| {result['predict']['max_abs_prob_diff']}
            attack:  {result['attack']['examples']} examples, outcomes equal: {result['attack']['outcomes_equal']}
            align:   {result['align']['examples']} sentences, optimizer steps per process: {result['align']['steps_per_process']}"""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
