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
    import click

    app = build_app()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="aligneval")
    except AlignevalError as err:
        typer.echo(f"error: {err.message}", err=True)
        return err.exit_code
    except click.exceptions.ClickException as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        return err.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        typer.echo("interrupted: finished work is kept; re-run the same command to resume", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def run_cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run_cli()
