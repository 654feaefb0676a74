"""`aligneval align`: fine-tune a baseline and its alignment-attention twin. Parses and prints only;
the work is `aligneval.api.align` (aligneval.align.train.align_pair)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperCommand

from aligneval.errors import UsageError

# --variant's help; `variant_help` appends every registered variant when the help is shown
VARIANT_HELP = "The alignment variant (see docs/align.md)"


def variant_help() -> str:
    """--variant's help: every registered variant (built-in and plugin) with its one line of help. Built
    only when the help is shown, since the variants import torch."""
    from aligneval.align.variants import load_variants

    lines = [f"{name}: {variant.help.rstrip('.')}" for name, variant in load_variants().items()]
    return f"{VARIANT_HELP}: {'; '.join(lines)}."


class _AlignCommand(TyperCommand):
    """`align`, whose --variant help lists the registry as it stands when the help is asked for."""

    def format_help(self, ctx, formatter) -> None:
        for param in self.params:
            if param.name == "variant":
                param.help = variant_help()
        super().format_help(ctx, formatter)


def parse_seeds(seed: list[int] | None, seeds: str | None) -> tuple[int, ...]:
    """Repeated --seed and comma- or space-separated --seeds, merged in order; default (13,)."""
    values = list(seed or [])
    for part in (seeds or "").replace(",", " ").split():
        try:
            values.append(int(part))
        except ValueError:
            raise UsageError(f"--seeds takes integers like 13,21,42, not '{seeds}'") from None
    return tuple(dict.fromkeys(values)) or (13,)


def parse_options(pairs: list[str] | None) -> dict:
    """KEY=VALUE strings -> dict; values become int, float or bool when they read as one."""
    options: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--variant-option takes KEY=VALUE, not '{pair}'")
        value: object = raw.strip()
        if raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        options[key.strip().replace("-", "_")] = value
    return options


def register(app: typer.Typer) -> None:
    @app.command("align", cls=_AlignCommand)
    def align(
        model: str = typer.Option(..., "--model", help="Hub id or local model folder (safetensors)."),
        train: str = typer.Option(..., "--train", help="Training data: csv, tsv, jsonl, parquet, saved dataset, or hub id."),
        out: Path = typer.Option(..., "--out", help="Output folder: baseline/ and aligned/ (or seed-N/{baseline,aligned})."),
        dev: Optional[str] = typer.Option(None, "--dev", help="Dev data, evaluated after each epoch."),
        variant: str = typer.Option("gan", "--variant", help=f"{VARIANT_HELP}."),
        lam: str = typer.Option("0.01", "--lambda", help="Weight λ of the alignment loss (each layer weighs λ/L); "
                                "several values (0.01,0.1,1) train one twin per λ against one baseline."),
        aux_lr: Optional[float] = typer.Option(None, "--aux-lr", help="Learning rate of the discriminator/critic's own "
                                               "Adam (default: 30 × --lr)."),
        aux_steps: Optional[int] = typer.Option(None, "--aux-steps", help="Updates of the discriminator/critic per "
                                                "model step (default: the variant's: gan 5, ct family 3)."),
        seed: Optional[List[int]] = typer.Option(None, "--seed", help="Seed; repeat for several (--seed 13 --seed 21)."),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="Several seeds at once: --seeds 13,21,42."),
        epochs: int = typer.Option(1, "--epochs"),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps; overrides --epochs."),
        batch_size: int = typer.Option(16, "--batch-size"),
        grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-batches per optimizer step."),
        max_length: int = typer.Option(128, "--max-length", help="Tokens per example (truncation)."),
        lr: float = typer.Option(3e-5, "--lr"),
        warmup_ratio: float = typer.Option(0.06, "--warmup-ratio"),
        weight_decay: float = typer.Option(0.0, "--weight-decay"),
        clip: float = typer.Option(1.0, "--clip", help="Gradient-norm clipping (0 = off)."),
        freeze_layers: int = typer.Option(0, "--freeze-layers", help="Freeze embeddings + bottom N layers (both twins)."),
        text_column: Optional[str] = typer.Option(None, "--text-column", help="Default: text (multiple choice: "
                                                  "sent1, the context)."),
        text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column", help="Multiple choice: the "
                                                       "prefix of every ending (default sent2)."),
        label_column: Optional[str] = typer.Option(None, "--label-column", help="Default: label."),
        task: str = typer.Option("sequence-classification", "--task", help="sequence-classification | "
                                 "multiple-choice (SWAG columns by default)."),
        choice_column: Optional[List[str]] = typer.Option(
            None, "--choice-column", help="Multiple choice: an ending column; repeat (default ending0..ending3), "
            "or one column holding a list of endings."),
        lora: Optional[str] = typer.Option(None, "--lora", help="Train LoRA adapters instead of every weight: "
                                           "r=8,alpha=16[,dropout=0.05][,targets=query+key+value]; saved merged."),
        qk_pattern: Optional[str] = typer.Option(
            None, "--qk-pattern", help="For unsupported architectures: 'QUERY,KEY' module-name patterns (regex), or "
                                     "'fused=QKV' for one q|k|v output; add heads=N,kv_heads=N if the config lacks them."
        ),
        variant_option: Optional[List[str]] = typer.Option(
            None, "--variant-option", help="Variant setting KEY=VALUE, e.g. navigator=adversarial, eps=0.05."
        ),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model repo's own code."),
        allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (*.bin) weights."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an out folder holding a different run."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        device: Optional[str] = typer.Option(None, "--device", help="auto (CUDA, then MPS, then CPU) | cpu | cuda | mps."),
        mixed_precision: str = typer.Option("no", "--mixed-precision", help="no | fp16 | bf16 (fp16 needs a GPU)."),
        num_processes: Optional[int] = typer.Option(None, "--num-processes", help="Data-parallel training over N "
                                                    "processes (re-runs itself under accelerate launch)."),
        log_to: List[str] = typer.Option([], "--log-to", help="Also log to an experiment tracker: mlflow | wandb "
                                         "(repeat for both; optional extras, docs/integrations.md)."),
    ) -> Optional[int]:
        """Fine-tune the baseline and its aligned twin identically; save both with alignment cards."""
        from aligneval import api, distributed, tracking

        trackers = tracking.check(log_to)

        launched = distributed.maybe_relaunch(num_processes, device)
        if launched is not None:
            return launched

        result = api.align(
            model, train, out, dev=dev, variant=variant, lam=lam, aux_lr=aux_lr, aux_steps=aux_steps,
            seeds=parse_seeds(seed, seeds),
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
            max_length=max_length, lr=lr, warmup_ratio=warmup_ratio, weight_decay=weight_decay, clip=clip,
            freeze_layers=freeze_layers, qk_pattern=qk_pattern, variant_options=parse_options(variant_option),
            trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, overwrite=overwrite,
            progress=progress, text_column=text_column, text_pair_column=text_pair_column,
            label_column=label_column, device=device, mixed_precision=mixed_precision, task=task, lora=lora,
            choice_columns=tuple(choice_column) if choice_column else None,
        )
        if not distributed.is_main_process():
            return 0
        for run in result.runs:
            state = f"trained {', '.join(run.trained)}" if run.trained else "already finished, skipped"
            typer.echo(f"seed {run.seed}: {state}")
            typer.echo(f"  baseline: {run.baseline}")
            for value, folder in run.twins.items():
                typer.echo(f"  {'aligned' if len(run.twins) == 1 else 'λ=' + format(value, 'g')}:  {folder}")
        if trackers:  # read back from the folders align wrote (alignment.json, train_log.jsonl)
            from aligneval.tracking.payload import for_align

            folders = [f for r in result.runs for f in (r.baseline, *r.twins.values())]
            for line in tracking.publish(trackers, for_align(out, folders), out):
                typer.echo(line)
