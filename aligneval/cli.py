"""The command line: parses and prints. The verbs live in `aligneval.api`; errors become one line + exit code."""

from __future__ import annotations

import importlib
import sys

import typer

from aligneval.errors import EXIT_INTERRUPTED, AlignevalError

# Each module defines `register(app)`; its heavy imports happen inside the command body.
COMMAND_MODULES = ("demo", "align", "run", "suites", "attack", "report", "gate")


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="aligneval",
        help="Is my Hugging Face model better once converted to alignment attention? "
        "Convert, fine-tune the pair, evaluate, compare, report, gate.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                     help="Print the version and exit."),
    ) -> None:
        """Is my Hugging Face model better once converted to alignment attention?"""

    for name in COMMAND_MODULES:
        importlib.import_module(f"aligneval.commands.{name}").register(app)
    return app


def _print_version(value: bool) -> None:
    if value:
        from aligneval import __version__

        typer.echo(f"aligneval {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map every known failure to one line on stderr and a distinct exit code."""
    usage_errors, aborts, exits = _parser_exceptions()
    app = build_app()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="aligneval")
    except AlignevalError as err:
        typer.echo(f"error: {err.message}", err=True)
        return err.exit_code
    except usage_errors as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        return 2 if getattr(err, "exit_code", 2) in (1, 2) else err.exit_code
    except (KeyboardInterrupt, *aborts):
        typer.echo("interrupted: finished work is kept; re-run the same command to resume", err=True)
        return EXIT_INTERRUPTED
    except exits as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def _parser_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """Typer >= 0.20 vendors click (typer._click); older Typer raises click's own classes. Catch both."""
    usage, aborts, exits = [typer.TyperException], [typer.Abort], [typer.Exit]
    try:
        import click

        usage.append(click.exceptions.ClickException)
        aborts.append(click.exceptions.Abort)
        exits.append(click.exceptions.Exit)
    except ImportError:
        pass
    return tuple(usage), tuple(aborts), tuple(exits)


def run_cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run_cli()
