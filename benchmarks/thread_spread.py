"""How much do the every-variant test's trained effects move with the thread count? The test's sweep
(tests/test_align_game.py: tiny BERTs of seeds 0, 1, 2; each variant's twins at λ = 0.1 and 1; 80
steps, batch 16, lr 1e-3), trained once with each torch thread count given, side by side in one run.

Another thread count sums in another order, so each trajectory rounds differently, as it would on
another CPU: the spread between the columns is the margin a bound on a trained effect needs.

    python benchmarks/thread_spread.py OUT_DIR [--threads 1,2] [--variants gan,ct,...] [--seeds 0,1,2] [--json]

Prints a line per (variant, seed, λ) with twin ÷ baseline K–Q MMD² under each thread count; with --json
the last line is {"threads": [...], "rows": [...], "max_abs_diff": {variant: ...}, "worst": {...}}.
These are effects, not timings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aligneval.align.train import align_pair  # noqa: E402
from tests.test_align_game import GAME, TINY_SEEDS, VARIANTS, _mean_mmd  # noqa: E402
from tests.tiny import make_tiny_model, sentences, write_fixture  # noqa: E402


def sweep(out: Path, threads: int, variants: list[str], seeds: list[int], train: Path, texts, train_half) -> dict:
    """{(variant, seed, λ): twin ÷ baseline} with `threads` torch threads for every training."""
    import torch

    ratios = {}
    for seed in seeds:
        folder = make_tiny_model(out / f"model-{seed}", seed=seed)  # sets one thread: set ours after it
        torch.set_num_threads(threads)
        base = align_pair(str(folder), train, out / f"mmd-{seed}", variant="mmd", lam="0.1,1", **GAME).runs[0]
        baseline = _mean_mmd(base.baseline, texts, train_half)
        for variant in variants:
            if variant == "mmd":
                run = base
            else:
                target = out / f"{variant}-{seed}"
                target.mkdir(parents=True, exist_ok=True)
                if not (target / "baseline").exists():  # the baseline is shared, as in the test
                    (target / "baseline").symlink_to(base.baseline, target_is_directory=True)
                torch.set_num_threads(threads)
                run = align_pair(str(folder), train, target, variant=variant, lam="0.1,1", **GAME).runs[0]
            for lam, twin in run.twins.items():
                ratios[variant, seed, lam] = _mean_mmd(twin, texts, train_half) / baseline
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default=",".join(str(s) for s in TINY_SEEDS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    variants = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    train = write_fixture(args.out, n=400)
    texts = [t for t, _ in sentences(60, seed=5)]
    train_half = np.arange(60) < 30
    by_threads = {t: sweep(args.out / f"threads-{t}", t, variants, seeds, train, texts, train_half) for t in threads}
    rows = []
    for key in by_threads[threads[0]]:
        variant, seed, lam = key
        values = {t: round(by_threads[t][key], 4) for t in threads}
        rows.append({"variant": variant, "seed": seed, "lambda": lam, **{f"threads_{t}": v for t, v in values.items()}})
        print(f"{variant:9s} seed {seed} λ {lam:<4g} " + "  ".join(f"{t} thread(s): {v:+.3f}" for t, v in values.items()),
              flush=True)
    spread = {v: round(max(abs(r[f"threads_{a}"] - r[f"threads_{b}"]) for r in rows if r["variant"] == v
                           for a in threads for b in threads), 4) for v in variants}
    worst = {v: round(max(r[f"threads_{t}"] for r in rows if r["variant"] == v for t in threads), 4) for v in variants}
    print("largest change between thread counts: " + ", ".join(f"{v} {d:.3f}" for v, d in spread.items()))
    print("worst twin ÷ baseline over all: " + ", ".join(f"{v} {w:.3f}" for v, w in worst.items()))
    if args.json:
        print(json.dumps({"threads": threads, "rows": rows, "max_abs_diff": spread, "worst": worst}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
