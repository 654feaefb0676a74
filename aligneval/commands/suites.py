"""`aligneval suites list | show NAME | validate SPEC`: what suites and specs exist and what they compute."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Built-in suites and suite specs: list, show, validate.", no_args_is_help=True)

    @group.command("list")
    def list_command() -> int:
        """Built-in suites and specs, one line each."""
        from aligneval.spec import builtin_specs
        from aligneval.suites import get_suite, suite_names

        specs = builtin_specs()
        width = max(len(n) for n in suite_names() + list(specs)) + 2
        typer.echo("suites:")
        for name in suite_names():
            typer.echo(f"  {name:<{width}}{get_suite(name).description}")
        typer.echo("specs:")
        for name, path in specs.items():
            typer.echo(f"  {name:<{width}}{_spec_line(path)}")
        return 0

    @group.command("show")
    def show_command(name: str = typer.Argument(..., help="A suite name or a spec name/path.")) -> int:
        """What a suite computes with its settings and defaults, or what a spec contains."""
        from aligneval.errors import UsageError
        from aligneval.spec import builtin_specs
        from aligneval.suites import suite_names

        if name in suite_names():
            _show_suite(name)
        elif name in builtin_specs() or name.endswith(".toml"):
            _show_spec(name)
        else:
            from aligneval.registry import did_you_mean

            known = suite_names() + sorted(builtin_specs())
            raise UsageError(f"no suite or spec named '{name}'{did_you_mean(name, known)}; known: {', '.join(known)}")
        return 0

    @group.command("validate")
    def validate_command(spec: str = typer.Argument(..., help="A spec file or built-in spec name."),
                         check_files: bool = typer.Option(True, "--check-files/--no-check-files",
                                                          help="Check that local data files exist.")) -> int:
        """Check a spec (keys, types, roles, suites, settings, data files) without running anything."""
        from aligneval.spec import load_spec

        loaded = load_spec(spec, check_files=check_files)
        typer.echo(f"ok: {loaded.path}: {len(loaded.splits)} split(s), suites: {', '.join(loaded.suites)}")
        return 0

    app.add_typer(group, name="suites")


def _spec_line(path) -> str:
    from aligneval.errors import AlignevalError
    from aligneval.spec import load_spec

    try:
        spec = load_spec(path, check_files=False)
    except AlignevalError as err:
        return f"(invalid: {err.message})"
    roles = ", ".join(f"{s.name}:{s.role}" for s in spec.splits.values())
    return f"{spec.description or '-'} [{roles}]"


def _show_suite(name: str) -> None:
    import json

    from aligneval.suites import get_suite

    info = get_suite(name)
    typer.echo(f"{name}: {info.description}")
    if info.needs_models:
        typer.echo("  queries the models directly (not only cached predictions)")
    module = __import__(info.fn.__module__, fromlist=["_"])
    if module.__doc__:
        typer.echo("")
        typer.echo(module.__doc__.strip())
    typer.echo("")
    typer.echo("settings (defaults) for [suites.%s]:" % name)
    for key, value in info.defaults.items():
        typer.echo(f"  {key} = {json.dumps(value)}")
    if not info.defaults:
        typer.echo("  (none)")
    if isinstance(info.defaults.get("metrics"), list):
        from aligneval.metrics import get_metric

        typer.echo("")
        typer.echo("default metrics (direction, range):")
        for name in info.defaults["metrics"]:
            m = get_metric(name)
            lo, hi = ("-inf" if m.range[0] is None else m.range[0]), ("inf" if m.range[1] is None else m.range[1])
            arrow = "higher is better" if m.higher_is_better else "lower is better"
            typer.echo(f"  {m.name:<12} {arrow}, [{lo}, {hi}]: {m.description}")


def _show_spec(name: str) -> None:
    from aligneval.spec import load_spec

    spec = load_spec(name, check_files=False)
    typer.echo(f"{spec.name}: {spec.description or '-'}")
    typer.echo(f"  file: {spec.path}")
    typer.echo(f"  task {spec.task}, seed {spec.seed}, max_length {spec.max_length}, batch_size {spec.batch_size}")
    for split in spec.splits.values():
        sample = f", sample {split.source.sample}" if split.source.sample else ""
        typer.echo(f"  split {split.name:<12} role {split.role:<5} {split.raw_path}{sample}")
    for suite in spec.suites.values():
        typer.echo(f"  suite {suite.name:<12} {suite.settings}")
    for model, path in spec.models.items():
        typer.echo(f"  model {model:<12} {path}")
