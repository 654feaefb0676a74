"""The command line: parses and prints. The verbs live in `aligneval.api`; errors become one line + exit code."""

from __future__ import annotations

import datetime as _dt
import errno
import importlib
import os
import sys
import tempfile
import traceback
from pathlib import Path

import typer

from aligneval import __version__, distributed
from aligneval.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_REGRESSION, AlignevalError, ResourceError

# Each module defines `register(app)`; its heavy imports happen inside the command body.
COMMAND_MODULES = ("demo", "align", "run", "suites", "attack", "report", "gate", "card", "push", "env")


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
        typer.echo(f"aligneval {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map every failure to one line on stderr and a distinct exit code. Exit 1 means only
    "the gate found a regression": anything unforeseen is exit 70 with the traceback in a log file."""
    code = _main(argv)
    if code != EXIT_INTERRUPTED:  # an interrupted rank may have a collective in flight: leave it to the launcher
        distributed.shutdown()
    return code


def _main(argv: list[str] | None) -> int:
    usage_errors, aborts, exits = _parser_exceptions()
    try:
        app = build_app()
        distributed.remember_argv(argv)  # --num-processes re-executes the command under accelerate launch
        result = app(args=argv, standalone_mode=False, prog_name="aligneval")
    except AlignevalError as err:  # under several processes every rank raises it; the main one says it
        return _fail(err.message, err.exit_code) if distributed.is_main_process() else err.exit_code
    except usage_errors as err:
        message = " ".join(str(err.format_message()).split())
        if not message:  # click's "no arguments: show help" (the help is already printed)
            ctx = getattr(err, "ctx", None)
            message = f"{getattr(ctx, 'command_path', 'aligneval')}: missing command; see the help above"
        code = getattr(err, "exit_code", 2)
        return _fail(message, 2 if code in (0, 1, 2) or not isinstance(code, int) else code)
    except (KeyboardInterrupt, *aborts):
        return _interrupted()
    except exits as exc:
        return _exit_code(exc.exit_code, argv)
    except SystemExit as exc:  # a library calling sys.exit(): never let its 1 pass for a regression
        return _exit_code(exc.code, argv)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            where = f" writing {exc.filename}" if exc.filename else ""
            return _fail(f"no space left on the device{where}; free some space and re-run (finished work is kept)",
                         ResourceError.exit_code)
        return _internal_error(exc, argv)
    except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
        return _internal_error(exc, argv)
    if isinstance(result, bool) or not isinstance(result, int):
        return 0
    if result == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into a returned 130, which would pass silently
        return _interrupted()
    return _exit_code(result, argv)


def _interrupted() -> int:
    typer.echo("interrupted: finished work is kept; re-run the same command to resume", err=True)
    return EXIT_INTERRUPTED


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


def _fail(message: str, code: int) -> int:
    """One line on stderr: the message, newlines folded (under --num-processes the launcher prints the
    main process's line: `distributed.hand_error_to_launcher`)."""
    line = f"error: {' '.join(str(message).split())}"
    if not distributed.hand_error_to_launcher(line, code):
        typer.echo(line, err=True)
    return code


def _exit_code(code: object, argv: list[str] | None) -> int:
    """An explicit exit: 0 and our own codes pass through; 1 is allowed only from the gate."""
    if code is None:
        return 0
    if not isinstance(code, int):
        return _fail(str(code), 2)
    if code == EXIT_REGRESSION and type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return EXIT_BROKEN_PIPE  # click's exit 1 after the reader closed the pipe (`| head`): not a failure of ours
    if code == EXIT_REGRESSION and _command(argv) != "gate":
        return _internal_error(RuntimeError("an exit with code 1 outside the gate"), argv)
    return code


def _command(argv: list[str] | None) -> str | None:
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in args if not a.startswith("-")), None)


def log_dir() -> Path:
    """Where crash logs go: $ALIGNEVAL_LOG_DIR, else the user cache (~/.cache/aligneval/logs). Never the
    output folder the user named: a crash must not leave files among the results."""
    if os.environ.get("ALIGNEVAL_LOG_DIR"):
        return Path(os.environ["ALIGNEVAL_LOG_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "aligneval" / "logs"


def write_crash_log(exc: BaseException, argv: list[str] | None) -> Path | None:
    """The traceback, the command line and the versions, in a new file; None when nothing is writable."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"aligneval {__version__}, Python {sys.version.split()[0]}, {sys.platform}\n"
            f"argv: {sys.argv[1:] if argv is None else list(argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    user = os.getuid() if hasattr(os, "getuid") else 0
    for folder in (log_dir(), Path(tempfile.gettempdir()) / f"aligneval-logs-{user}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            return Path(name)
        except OSError:
            continue
    return None


def _internal_error(exc: BaseException, argv: list[str] | None) -> int:
    log = write_crash_log(exc, argv)
    what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    where = f"traceback in {log}" if log else "no log could be written"
    return _fail(f"internal error (a bug in aligneval, please report it): {what}; {where}", EXIT_INTERNAL)


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
