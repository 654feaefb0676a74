"""The same attacks on two dependency sets: per-example outcomes and perturbed texts compared.

    python benchmarks/attack_cross_stack.py --model FOLDER --python A/bin/python --python B/bin/python \\
        [--recipes deepwordbug,pruthi,pwws] [--num-examples 30] [--query-budget 200] [--json]

Runs `aligneval attack` (this checkout, on PYTHONPATH) with each interpreter on one model folder and
one seeded sample of the packaged movie test snippets (the sample `attack_speed.py` uses), both at
once, then compares `attacks/m/<recipe>.jsonl` example by example: the outcome
(succeeded / failed / skipped) and the perturbed text. Meant for the legacy set (transformers 4.57.6,
real flair) against the current one (transformers 5, aligneval's flair stand-in). With --json the
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _attack_speed():
    spec = importlib.util.spec_from_file_location("attack_speed", ROOT / "benchmarks" / "attack_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stack_of(python: str) -> dict[str, str | None]:
    code = ("import json; from aligneval.versions import package_versions; print(json.dumps(package_versions("
            "['transformers', 'huggingface-hub', 'datasets', 'tokenizers', 'torch', 'textattack', 'flair'])))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def start(python: str, model: Path, data: Path, recipes: list[str], n: int, budget: int, seed: int,
          out: Path) -> tuple[subprocess.Popen, float]:
    cmd = [python, "-m", "aligneval", "attack", "--model", f"m={model}", "--data", str(data),
           "--num-examples", str(n), "--query-budget", str(budget), "--examples", "all", "--seed", str(seed),
           "--max-length", "512", "--out", str(out)]
    for recipe in recipes:
        cmd += ["--recipe", recipe]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()), time.perf_counter()


def finish(proc: subprocess.Popen, t0: float, python: str, recipes: list[str], out: Path
           ) -> tuple[float, dict[str, dict[str, dict]]]:
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{python}: aligneval attack failed ({proc.returncode}): {stderr[-2000:]}")
    rows = {}
    for recipe in recipes:
        lines = (out / "attacks" / "m" / f"{recipe}.jsonl").read_text().splitlines()[1:]
        rows[recipe] = {r["id"]: r for r in map(json.loads, lines)}
    return seconds, rows


def compare(a: dict[str, dict[str, dict]], b: dict[str, dict[str, dict]]) -> dict[str, dict]:
    result = {}
    for recipe in a:
        ids = list(a[recipe])
        same_outcome = [i for i in ids if a[recipe][i]["outcome"] == b[recipe].get(i, {}).get("outcome")]
        same_text = [i for i in ids if a[recipe][i]["perturbed"] == b[recipe].get(i, {}).get("perturbed")]
        counts = {o: sum(r["outcome"] == o for r in a[recipe].values()) for o in ("succeeded", "failed", "skipped")}
        result[recipe] = {"examples": len(ids), "same_outcome": len(same_outcome), "same_perturbed": len(same_text),
                          "outcomes": counts,
                          "differences": [{"id": i, "a": [a[recipe][i]["outcome"], a[recipe][i]["perturbed"]],
                                           "b": [b[recipe].get(i, {}).get("outcome"), b[recipe].get(i, {}).get("perturbed")]}
                                          for i in ids if i not in same_outcome or i not in same_text]}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="A fine-tuned classifier folder both stacks load.")
    p.add_argument("--python", action="append", required=True, help="Interpreter of a stack; give two.")
    p.add_argument("--recipes", default="deepwordbug,pruthi,pwws")
    p.add_argument("--num-examples", type=int, default=30)
    p.add_argument("--query-budget", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="Chooses the examples (attack_speed's sample).")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if len(args.python) != 2:
        p.error("give --python twice")
    recipes = [r for r in args.recipes.split(",") if r]
    bench = _attack_speed()
    examples = bench.pick_examples(args.num_examples, args.seed)
    with tempfile.TemporaryDirectory(prefix="attack-cross-stack-") as tmp:
        work = Path(tmp)
        data, _ = bench.write_inputs(examples, work / "inputs")
        # both stacks at once: outcomes do not depend on timing (query budgets, seeded per example), and
        # the seconds are wall time of runs sharing the machine, not a speed comparison
        started = [start(python, args.model, data, recipes, len(examples), args.query_budget, bench.TA_SEED,
                         work / f"out{k}") for k, python in enumerate(args.python)]
        runs = []
        for k, (python, (proc, t0)) in enumerate(zip(args.python, started)):
            seconds, rows = finish(proc, t0, python, recipes, work / f"out{k}")
            runs.append({"python": python, "stack": stack_of(python), "seconds": round(seconds, 1), "rows": rows})
    result = {"model": str(args.model), "examples": len(examples), "query_budget": args.query_budget,
              "stacks": [{k: v for k, v in r.items() if k != "rows"} for r in runs],
              "recipes": compare(runs[0]["rows"], runs[1]["rows"])}
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
