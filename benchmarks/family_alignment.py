"""Does alignment work on today's architectures? Twin ÷ baseline K–Q MMD² per family, variant, λ, seed.

For each family of tests/tiny_families.py (tiny random configs built by transformers: 2 layers,
4 query heads, 2 key heads where the family has grouped-query attention) and each seed, one tiny
model is built; `align_pair` trains the baseline and a twin at λ = 0.1 and 1 with the budget of
tests/test_align_game.py's every-variant test (80 steps, batch 16, lr 1e-3, no warm-up, 400
fixture sentences, the variant's default auxiliary settings), and the `alignment` suite's
`measure` gives each model's mean K–Q MMD² on 60 held-out sentences. The ratio twin ÷ baseline is
printed (a negative ratio: the twin's unbiased MMD² fell below zero, keys and queries
indistinguishable). These are effects, not timings; the seconds per line are wall time on a shared
machine.

    python benchmarks/family_alignment.py OUT_DIR [--seeds 0,1,2] [--families llama,gpt2] [--variants gan,mmd]
        [--steps 80] [--variant-option below=off]

Prints one JSON object a line: {"family", "seed", "variant", "steps", "baseline", "ratio@0.1", "ratio@1", "s"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aligneval.align.train import align_pair  # noqa: E402
from aligneval.commands.align import parse_options  # noqa: E402
from aligneval.suites.alignment import measure  # noqa: E402
from tests.tiny import sentences, write_fixture  # noqa: E402
from tests.tiny_families import FAMILIES, make_family_model  # noqa: E402


def mean_mmd(folder: Path, texts: list[str], train_half: np.ndarray) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    values = measure(model, tokenizer, texts, None, train_half, qk_pattern=None, max_length=32, batch_size=32,
                     scales=(0.5, 1.0, 2.0), probe_c=1.0, probe_max_iter=200)
    return float(np.nanmean(values["kq_mmd2"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--variants", default="gan,mmd")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--variant-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of every variant run, read as `aligneval align --variant-option` reads it")
    args = parser.parse_args()
    options = parse_options(args.variant_option)
    tag = "".join(f"-{k}={v}" for k, v in sorted(options.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    train = write_fixture(args.out, n=400)
    texts = [t for t, _ in sentences(60, seed=5)]
    train_half = np.arange(60) < 30
    for family in args.families.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = make_family_model(args.out / "models", family, seed=seed)
            for variant in args.variants.split(","):
                start = time.time()
                result = align_pair(str(folder), train, args.out / f"{family}-{seed}-{variant}-{args.steps}{tag}",
                                    variant=variant, lam="0.1,1", max_steps=args.steps, batch_size=16, lr=1e-3,
                                    warmup_ratio=0.0, variant_options=options or None, progress=False)
                run = result.runs[0]
                baseline = mean_mmd(run.baseline, texts, train_half)
                row = {"family": family, "seed": seed, "variant": variant, "steps": args.steps, "options": options,
                       "baseline": baseline}
                for lam, twin in run.twins.items():
                    row[f"ratio@{lam:g}"] = mean_mmd(twin, texts, train_half) / baseline
                row["s"] = round(time.time() - start, 1)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
