"""LoRA against full fine-tuning: trainable-parameter fraction and training-step time, baseline and twin.

Four training steps are timed side by side in one process: full fine-tuning and LoRA (peft, r=8,
alpha=16 on the q/k projections, aligneval/align/lora.py), each as the baseline and as the aligned
twin (the training loop's own `build_game` and `Game.alignment_term`). Each step is forward, task
loss (+ alignment term), backward, clipping and AdamW over the trainable parameters, as
aligneval/align/loop.py runs it. Rounds are bracketed like benchmarks/align_overhead.py: the full
baseline opens and closes each round, the other modes run between (reversed every other round),
and a mode's figure is the median over rounds of its step ÷ the mean of that round's two full
baseline steps; the baseline's end ÷ start ratio is printed as the noise floor.

Models: `tiny-bert` (tests/tiny.py's sizes: hidden 32, 2 layers, 4 heads), `minilm` (the real
all-MiniLM-L6-v2, 6×384, when its package is installed), `tiny-llama` (a random LlamaConfig,
hidden 64, 2 layers, 4 heads, no grouped keys; hooked through `--qk-pattern q_proj,k_proj`
because the q/k registry has no Llama entry on this branch).

    python benchmarks/lora_step.py [--model tiny-bert|minilm|tiny-llama] [--steps 10] [--threads 1] [--json]
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
MODES = ("full-baseline", "full-aligned", "lora-baseline", "lora-aligned")


def build_model(name: str):
    """(model, q/k pattern or None, description)."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, BertConfig, LlamaConfig

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    if name == "tiny-bert":
        config = BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=80, num_labels=2)
        return AutoModelForSequenceClassification.from_config(config), None, "tiny BERT 2×32 (random)"
    if name == "tiny-llama":
        config = LlamaConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=4, intermediate_size=128, max_position_embeddings=256,
                             num_labels=2, pad_token_id=0)
        return AutoModelForSequenceClassification.from_config(config), "q_proj,k_proj", "tiny Llama 2×64 (random)"
    from aligneval.demo import pretrained_model_folder

    model = AutoModelForSequenceClassification.from_pretrained(str(pretrained_model_folder()), num_labels=2,
                                                               use_safetensors=True)
    return model, None, "all-MiniLM-L6-v2 (real weights)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-bert", choices=("tiny-bert", "minilm", "tiny-llama"))
    parser.add_argument("--steps", type=int, default=10, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--variant", default="mmd", help="the twin's variant")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from aligneval.align.lora import LoraSettings, adapt, parameter_counts
    from aligneval.align.game import AUX_LR_RATIO, build_game
    from aligneval.align.loop import build_optimizer
    from aligneval.align.plan import check_aux

    out = sys.stderr if args.json else sys.stdout
    load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, qk_pattern, description = build_model(args.model)
    full_size = sum(p.numel() for p in loaded.parameters())
    vocab = loaded.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (args.batch_size, args.length), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch_size,), generator=g)
    batch = {"input_ids": ids, "attention_mask": mask}
    aux = check_aux(AUX_LR_RATIO * HP["lr"], 1)

    models, optimizers, games, fractions = {}, {}, {}, {}
    for mode in MODES:
        kind, role = mode.split("-")
        model = copy.deepcopy(loaded)
        if kind == "lora":
            model = adapt(model, LoraSettings(r=8, alpha=16), seed=0, qk_pattern=qk_pattern)
        model.train()
        fractions[mode] = parameter_counts(model, full_size)["trainable_fraction"]
        models[mode], optimizers[mode] = model, build_optimizer(model, HP)
        games[mode] = (build_game(model, args.variant, 0.01, {}, aux, 0, {k: v[:1] for k, v in batch.items()},
                                  qk_pattern, HP["clip"]) if role == "aligned" else None)

    def step(mode: str) -> float:
        model, optimizer, game = models[mode], optimizers[mode], games[mode]
        trainable = [p for p in model.parameters() if p.requires_grad]
        start = time.perf_counter()
        logits = model(**batch).logits
        loss = F.cross_entropy(logits.float(), labels)
        if game is not None:
            loss = loss + game.alignment_term(mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, HP["clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {m: [] for m in MODES}
    ends: list[float] = []
    middle = list(MODES[1:])
    for round_ in range(args.steps + 1):
        start = step(MODES[0])
        inner = {m: step(m) for m in (middle if round_ % 2 else middle[::-1])}
        end = step(MODES[0])
        if round_ == 0:
            continue  # warm-up
        times[MODES[0]].append(start)
        ends.append(end)
        for m, t in inner.items():
            times[m].append(t)
    ratios = {m: statistics.median(t / ((s + e) / 2) for t, s, e in zip(times[m], times[MODES[0]], ends))
              for m in middle}
    seconds = {m: statistics.median(v) for m, v in times.items()}
    noise = statistics.median(e / s for s, e in zip(times[MODES[0]], ends))
    print(f"{description}: batch {args.batch_size}×{args.length}, {args.steps} rounds, twin variant {args.variant}, "
          f"threads {torch.get_num_threads()}, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}", file=out)
    print(f"  noise floor (full baseline end ÷ start, median): {noise:.3f}", file=out)
    for m in MODES:
        ratio = "1 (reference)" if m == MODES[0] else f"{ratios[m]:.3f}"
        print(f"  {m:14s} trainable {fractions[m]:.4%}  step {seconds[m] * 1e3:8.2f} ms  ÷ full baseline {ratio}",
              file=out)
    if args.json:
        print(json.dumps({"model": description, "trainable_fraction": fractions, "step_ms": {
            m: round(s * 1e3, 3) for m, s in seconds.items()}, "ratio_to_full_baseline": {
            m: round(r, 4) for m, r in ratios.items()}, "noise_floor": round(noise, 4), "batch": args.batch_size,
            "length": args.length, "rounds": args.steps, "variant": args.variant,
            "threads": torch.get_num_threads(), "load_average": [round(load_before, 2),
                                                                  round(os.getloadavg()[0], 2)]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
