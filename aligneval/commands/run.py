"""`aligneval run SPEC --model NAME=PATH ... --out DIR`: predict once, score every suite, write results.json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        spec: str = typer.Argument(..., help="A spec file (suites/*.toml) or a built-in spec name (see `suites list`)."),
        model: List[str] = typer.Option([], "--model", "-m", help="NAME=PATH (local folder or hub id); repeat. "
                                        "Defaults to the spec's models table."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/<spec name>)."),
        suite: List[str] = typer.Option([], "--suite", "-s", help="Run only these suites; repeat."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace results of another spec or model set."),
        allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                          help="Load .bin (pickle) checkpoints; they can run code. Trust the source."),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                               help="Let transformers run model code shipped with the checkpoint."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        device: Optional[str] = typer.Option(None, "--device", help="auto (CUDA, then MPS, then CPU) | cpu | cuda | mps."),
        num_processes: Optional[int] = typer.Option(None, "--num-processes", help="Shard prediction and attacks "
                                                    "over N processes (re-runs itself under accelerate launch)."),
        log_to: List[str] = typer.Option([], "--log-to", help="Also log to an experiment tracker: mlflow | wandb "
                                         "(repeat for both; optional extras, docs/integrations.md)."),
    ) -> int:
        """Evaluate models on a suite spec; predictions are cached, so re-running never re-runs a model."""
        from aligneval import distributed, tracking
        from aligneval.runner import run

        trackers = tracking.check(log_to)

        launched = distributed.maybe_relaunch(num_processes, device)
        if launched is not None:
            return launched
        results = run(spec, model or None, out, suites=suite or None, overwrite=overwrite,
                      allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, progress=progress,
                      device=device)
        if results is None:
            return 0  # not the main process: it printed and wrote nothing
        print_summary(results)
        typer.echo(f"wrote {results.path}")
        if trackers:  # after results.json is written: a tracker that fails loses nothing
            from aligneval.tracking.payload import for_run

            for line in tracking.publish(trackers, for_run(results), results.run_dir):
                typer.echo(line)
        return 0


def print_summary(results) -> None:
    """One row per (suite, metric, split), one column per model; scaled and drop rows included."""
    from rich.console import Console
    from rich.table import Table

    models = list(results.doc["models"])
    rows: dict[tuple[str, str, str], dict[str, float | None]] = {}
    for r in results.records:
        rows.setdefault((r.suite, r.metric, r.split), {})[r.model] = r.value
    table = Table(title=f"{results.spec_name}: {len(results.records)} records")
    for col in ("suite", "metric", "split"):
        table.add_column(col)
    for m in models:
        table.add_column(m, justify="right")
    for (suite, metric, split), values in rows.items():
        table.add_row(suite, metric, split, *("-" if values.get(m) is None else f"{values[m]:.4f}" for m in models))
    console = Console()
    console.print(table)
    for split, info in results.doc["data"].items():
        if info.get("skipped"):
            console.print(f"{split}: skipped {info['skipped']} null or empty text(s) (on_empty = \"skip\"); "
                          f"evaluated {info['size']}", markup=False, soft_wrap=True)
