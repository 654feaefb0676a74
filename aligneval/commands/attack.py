"""`aligneval attack`: a one-off adversarial attack, `--list` of recipes, `--setup` of NLTK data."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("attack")
    def attack_command(
        model: List[str] = typer.Option([], "--model", "-m", help="NAME=PATH of a local model folder; repeat."),
        data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labelled data file (csv, jsonl, parquet)."),
        recipe: List[str] = typer.Option([], "--recipe", "-r", help="TextAttack recipe (default deepwordbug); repeat."),
        num_examples: int = typer.Option(100, "--num-examples", "-n", min=1, help="Examples in the shared list."),
        query_budget: int = typer.Option(200, "--query-budget", "-q", min=1, help="Model queries per example."),
        time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Wall-clock seconds per model "
                                                    "and recipe; the rest is left for a re-run."),
        examples: str = typer.Option("correct-by-all", "--examples", help="correct-by-all | all"),
        seed: int = typer.Option(0, "--seed", help="Chooses the examples; seeds every attack."),
        out: Path = typer.Option(Path("runs/attack"), "--out", "-o", help="Output folder (resumable)."),
        text_column: str = typer.Option("text", "--text-column"),
        label_column: str = typer.Option("label", "--label-column"),
        id_column: Optional[str] = typer.Option(None, "--id-column", help="Default: 'id' when present, else row numbers."),
        max_length: int = typer.Option(256, "--max-length", min=1),
        batch_size: int = typer.Option(32, "--batch-size", min=1),
        list_recipes: bool = typer.Option(False, "--list", help="Which recipes can run here, and why not."),
        setup: bool = typer.Option(False, "--setup", help="Find or build the NLTK data the recipes need."),
        device: Optional[str] = typer.Option(None, "--device", help="auto (CUDA, then MPS, then CPU) | cpu | cuda | mps."),
        num_processes: Optional[int] = typer.Option(None, "--num-processes", help="Deal the examples to N processes "
                                                    "(re-runs itself under accelerate launch); resumable with any N."),
    ) -> int:
        """Attack models with TextAttack recipes on one shared example list; killed runs resume."""
        from aligneval.errors import UsageError

        if list_recipes:
            _print_list()
            return 0
        if setup:
            return _setup()
        if not model or data is None:
            raise UsageError("attack needs --model NAME=PATH (one or more) and --data FILE "
                             "(or --list / --setup)")
        from aligneval.attack.runner import attack
        from aligneval.paths import check_output_dir

        from aligneval.attack.recipes import RECIPES, install_reason
        from aligneval.errors import ResourceError

        for name in recipe or ["deepwordbug"]:
            RECIPES.get(name)  # an unknown name is a usage error (exit 2) before anything else
        for name in recipe or ["deepwordbug"]:
            missing = install_reason(name)  # TextAttack, flair or a flair model: only installing helps
            if missing:
                raise ResourceError(missing)
        models = _parse_models(model)
        if time_budget is not None and not time_budget > 0:
            raise UsageError(f"--time-budget must be a positive number of seconds, not {time_budget}")
        check_output_dir(out, "--out")  # every input and output location is checked before any work
        for name, path in models.items():
            _check_model_folder(name, path)
        from aligneval import distributed

        distributed.check_num_processes(num_processes)
        if num_processes is not None and num_processes > num_examples:
            raise UsageError(f"--num-processes {num_processes} is more than the {num_examples} examples to attack")
        launched = distributed.maybe_relaunch(num_processes, device)
        if launched is not None:
            return launched
        distributed.configure(device)
        result = attack(models, str(data), out, recipes=recipe or ["deepwordbug"],
                        num_examples=num_examples, query_budget=query_budget, seed=seed, examples=examples,
                        time_budget_s=time_budget, max_length=max_length, batch_size=batch_size,
                        text_column=text_column, label_column=label_column, id_column=id_column)
        if not distributed.state().is_main:
            return 0  # the main process prints and writes
        _print_records(result.records)
        typer.echo(f"wrote {out / 'attack_results.json'}")
        return 0


def _parse_models(pairs: list[str]) -> dict[str, str]:
    from aligneval.errors import UsageError
    from aligneval.paths import check_name

    models: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--model expects NAME=PATH, got '{pair}'")
        check_name(name, "--model: model name")  # names a folder: <out>/attacks/<model>/
        if name in models:
            raise UsageError(f"--model: name '{name}' given twice")
        models[name] = path
    return models


def _check_model_folder(name: str, path: str) -> None:
    """A local folder with config.json and readable safetensors weights (headers only, no torch)."""
    from aligneval.errors import ArtifactError
    from aligneval.predict import check_safetensors
    from aligneval.results import read_json

    folder = Path(path).expanduser()
    if not folder.exists():
        raise ArtifactError(f"--model {name}: model folder not found: {folder}")
    if not folder.is_dir():
        raise ArtifactError(f"--model {name}: {folder} is a file; give the folder written by save_pretrained")
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"--model {name}: {folder}: no config.json; is this a folder written by save_pretrained?")
    if not isinstance(read_json(folder / "config.json", "config"), dict):
        raise ArtifactError(f"--model {name}: {folder / 'config.json'}: corrupt config (not a JSON object)")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ArtifactError(f"--model {name}: {folder}: no *.safetensors weights (attacks load safetensors only)")
    check_safetensors(folder, weights)


def _print_list() -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from aligneval.attack.loader import INSTALL_ATTACK, missing_attack_modules, real_flair_installed
    from aligneval.attack.recipes import RECIPES, unavailable_reason
    from aligneval.versions import package_versions

    console = Console(width=160)
    missing = missing_attack_modules()
    if missing:
        console.print(f"TextAttack cannot start here (missing: {', '.join(missing)}): {INSTALL_ATTACK}",
                      markup=False, highlight=False)
    else:
        versions = package_versions(["textattack", "flair"])
        flair = (f"real flair {versions['flair']}" if real_flair_installed()
                 else "flair not installed: aligneval's stand-in lets TextAttack import; recipes using flair's taggers cannot run")
        console.print(f"TextAttack {versions['textattack']}; {flair}", markup=False, highlight=False)
    table = Table(title="TextAttack recipes")
    for col in ("recipe", "runs here", "needs / why not", "paper"):
        table.add_column(col)
    for name, info in RECIPES.items():
        reason = unavailable_reason(name)
        needs = reason or (", ".join(f"NLTK {n} (found)" for n in info.needs) or "nothing")
        if reason is None and info.online:
            needs = f"network (reachable): {info.online}"
        table.add_row(name, "yes" if reason is None else "no", escape(needs), escape(info.paper))
    console.print(table)


def _setup() -> int:
    from aligneval.attack import resources

    missing = 0
    for st in resources.setup():
        if st.ok:
            typer.echo(f"ok       {st.name:<10} {st.found}")
        else:
            missing += 1
            typer.echo(f"missing  {st.name:<10} {st.how_to_get}")
    typer.echo(f"NLTK data folders aligneval adds to NLTK_DATA: {', '.join(resources.our_nltk_paths())}")
    if missing:
        from aligneval.errors import ResourceError

        raise ResourceError(f"{missing} NLTK resource(s) missing; see above")
    return 0


def _print_records(records) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    models = list(dict.fromkeys(r.model for r in records))
    rows: dict[str, dict[str, object]] = {}
    notes: list[str] = []
    for r in records:
        rows.setdefault(r.metric, {})[r.model] = r.value
        if r.extra.get("unavailable") and r.extra["unavailable"] not in notes:
            notes.append(r.extra["unavailable"])
    table = Table(title="adversarial")
    table.add_column("metric")
    for m in models:
        table.add_column(escape(m), justify="right")
    for metric, values in rows.items():
        table.add_row(escape(metric), *("-" if values.get(m) is None else f"{values[m]:.4g}" for m in models))
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"not run: {escape(note)}", markup=False)
