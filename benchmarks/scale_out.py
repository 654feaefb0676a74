"""Scale-out: the same prediction and attack work in one process and in two, side by side.

`aligneval run` (prediction) and `aligneval attack`, each once in one process and once in two
(`--num-processes 2`: accelerate launch, gloo on the CPU).

    python benchmarks/scale_out.py [--small] [--predict-examples N] [--attack-examples N]
                                   [--query-budget Q] [--recipe deepwordbug] [--json]

Default model: the real all-MiniLM-L6-v2 encoder briefly fine-tuned on the packaged movie snippets
(benchmarks/attack_speed.py's `build_minilm`, 1-2 min); data: the packaged sentiment sentences
(movie test, Amazon, tweets, NYT). `--small` uses a tiny BERT trained on fixture sentences and a few
examples, with the same threads per process on both sides (a smoke run for tests: the outputs
must be bit-identical; its times mean nothing).

Every command runs as a fresh subprocess, as a user would start it (imports, process start-up and
accelerate's rendezvous included), with the prediction cache off and a fresh output folder. One
process gets all the cores' threads (OMP_NUM_THREADS = cores), each of N processes cores / N. The two
sides must produce the same outputs (checked: predictions bit-identical up to the thread count's
rounding, attack outcomes equal), so the speed-up compares equal work.

The last line with --json is exactly
    {"attack_speedup": ..., "predict_speedup": ..., "align_speedup": ...}
(wall time with 1 process / wall time with 2). `align` fine-tunes the pair (baseline + mmd twin at
λ = 0.1) for one epoch over the same sentences: one process takes every batch, two processes each
take every other batch of the same seeded order (data parallel: the same examples, half the
optimizer steps per process). The line before it holds the measured seconds and the checks, and (unless
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
        import gzip
        import importlib.resources

        root = importlib.resources.files("aligneval").joinpath("data/sentiment")
        left = n
        for split, name in DATA_SPLITS.items():
            if left <= 0:
                break
            with gzip.open(str(root.joinpath(f"{name}.jsonl.gz")), "rt", encoding="utf-8") as fh:
                rows = [line for line in fh if line.strip()][:left]
            left -= len(rows)
            (folder / f"{split}.jsonl").write_text("".join(rows), encoding="utf-8")
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
    rows = [json.loads(x) for x in (out / "attacks" / "m" / f"{recipe}.jsonl").read_text().splitlines()[1:]]
    return {r["id"]: {k: v for k, v in r.items() if k != "seconds"} for r in rows}


def measure(work: Path, model: Path, args: argparse.Namespace) -> dict:
    import numpy as np

    cores = os.cpu_count() or 2
    half = max(1, cores // 2)
    # one process gets every core's thread; --small gives both sides the same per-process threads, so
    # the outputs must be bit-identical (a smoke test of equality; its times mean nothing)
    whole = half if args.small else cores
    aligneval = [sys.executable, "-m", "aligneval"]
    spec = write_predict_spec(work / "predict-data", args.predict_examples, args.small)
    run = aligneval + ["run", str(spec), "--model", f"m={model}", "--no-progress", "--out"]
    predict_1 = timed(run + [str(work / "run-1")], whole)
    predict_2 = timed(run + [str(work / "run-2"), "--num-processes", "2"], half)
    # the same commands again on their finished folders read everything back and run no model:
    # what is left is start-up (imports, launch, rendezvous) and scoring, the fixed cost of each side
    fixed = {}
    if args.fixed_cost:
        fixed["predict"] = (timed(run + [str(work / "run-1")], whole),
                            timed(run + [str(work / "run-2"), "--num-processes", "2"], half))
    one, two = predict_outputs(work / "run-1"), predict_outputs(work / "run-2")
    same_ids = one.keys() == two.keys() and all(one[k][0] == two[k][0] for k in one)
    max_diff = max(float(np.abs(one[k][1] - two[k][1]).max()) for k in one) if same_ids else None
    labels_equal = same_ids and all(np.array_equal(one[k][1].argmax(1), two[k][1].argmax(1)) for k in one)

    examples = _sibling("attack_speed").pick_examples(args.attack_examples * 2, seed=0, tiny=args.small)
    data = work / "attack.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": t, "label": y}) + "\n" for i, t, y in examples))
    attack = aligneval + ["attack", "--model", f"m={model}", "--data", str(data), "--recipe", args.recipe,
                          "-n", str(args.attack_examples), "-q", str(args.query_budget), "--examples", "all",
                          "--out"]
    attack_1 = timed(attack + [str(work / "attack-1")], whole)
    attack_2 = timed(attack + [str(work / "attack-2"), "--num-processes", "2"], half)
    if args.fixed_cost:
        fixed["attack"] = (timed(attack + [str(work / "attack-1")], whole),
                           timed(attack + [str(work / "attack-2"), "--num-processes", "2"], half))
    a1, a2 = attack_outcomes(work / "attack-1", args.recipe), attack_outcomes(work / "attack-2", args.recipe)

    train = work / "align.jsonl"
    rows = _sibling("attack_speed").pick_examples(args.align_examples, seed=1, tiny=args.small)
    train.write_text("".join(json.dumps({"id": i, "text": t, "label": y}) + "\n" for i, t, y in rows))
    align = aligneval + ["align", "--model", str(model), "--train", str(train), "--epochs", "1", "--batch-size", "16",
                         "--max-length", "64", "--variant", "mmd", "--lambda", "0.1", "--no-progress", "--out"]
    align_1 = timed(align + [str(work / "align-1")], whole)
    align_2 = timed(align + [str(work / "align-2"), "--num-processes", "2"], half)
    cards = [json.loads((work / f"align-{n}" / "aligned" / "alignment.json").read_text()) for n in (1, 2)]
    return {
        "model": "tiny" if args.small else "minilm", "cores": cores,
        "predict": {"examples": sum(len(v[0]) for v in one.values()), "seconds_1": round(predict_1, 2),
                    "seconds_2": round(predict_2, 2), "max_abs_prob_diff": max_diff, "labels_equal": labels_equal},
        "attack": {"examples": len(a1), "recipe": args.recipe, "query_budget": args.query_budget,
                   "seconds_1": round(attack_1, 2), "seconds_2": round(attack_2, 2),
                   "outcomes_equal": a1 == a2,
                   "outcomes": {o: sum(r["outcome"] == o for r in a1.values()) for o in ("succeeded", "failed", "skipped")}},
        "fixed_cost_s": {k: {"seconds_1": round(a, 2), "seconds_2": round(b, 2)} for k, (a, b) in fixed.items()},
        "speedup_without_fixed_cost": {
            k: round((t1 - fixed[k][0]) / (t2 - fixed[k][1]), 3)
            for k, t1, t2 in (("predict", predict_1, predict_2), ("attack", attack_1, attack_2))
            if k in fixed and t2 > fixed[k][1]},
        "align": {"examples": len(rows), "seconds_1": round(align_1, 2), "seconds_2": round(align_2, 2),
                  "steps_per_process": [c["steps"] for c in cards],
                  "processes": [c["hyperparameters"]["processes"] for c in cards]},
        "predict_speedup": round(predict_1 / predict_2, 3), "attack_speedup": round(attack_1 / attack_2, 3),
        "align_speedup": round(align_1 / align_2, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="Tiny model and a few examples: a smoke run.")
    p.add_argument("--predict-examples", type=int, default=None, help="Examples predicted (default 11387; small 96).")
    p.add_argument("--attack-examples", type=int, default=None, help="Examples attacked (default 300; small 6).")
    p.add_argument("--query-budget", type=int, default=None, help="Queries per example (default 200; small 40).")
    p.add_argument("--recipe", default="deepwordbug")
    p.add_argument("--align-examples", type=int, default=None, help="Sentences fine-tuned on (default 1024; small 64).")
    p.add_argument("--fixed-cost", action=argparse.BooleanOptionalAction, default=None,
                   help="Also time each command again on its finished output (start-up and scoring only); "
                        "default on, off with --small.")
    p.add_argument("--json", action="store_true", help="End with the one-line JSON contract.")
    args = p.parse_args(argv)
    args.predict_examples = args.predict_examples or (96 if args.small else 11387)
    args.attack_examples = args.attack_examples or (6 if args.small else 300)
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
        print(textwrap.dedent(f"""\
            predict: {result['predict']['examples']} examples, 1 process {result['predict']['seconds_1']} s,
                     2 processes {result['predict']['seconds_2']} s -> {result['predict_speedup']}x
                     (labels equal: {result['predict']['labels_equal']}, max |dp| {result['predict']['max_abs_prob_diff']})
            attack:  {result['attack']['examples']} examples, 1 process {result['attack']['seconds_1']} s,
                     2 processes {result['attack']['seconds_2']} s -> {result['attack_speedup']}x
                     (outcomes equal: {result['attack']['outcomes_equal']})
            align:   {result['align']['examples']} sentences, 1 process {result['align']['seconds_1']} s,
                     2 processes {result['align']['seconds_2']} s -> {result['align_speedup']}x
                     (optimizer steps per process: {result['align']['steps_per_process']})"""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
