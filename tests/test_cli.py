"""The CLI edge: fast start (no heavy imports for --help), one line and a distinct exit code per failure."""

import subprocess
import sys

from aligneval.cli import main
from aligneval.errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_REGRESSION, ArtifactError, DataError,
                              ResourceError, UsageError)

HEAVY = ("torch", "transformers", "textattack", "matplotlib", "datasets", "pandas")


def test_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom aligneval.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_command_is_listed(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("demo", "align", "run", "suites", "attack", "report", "gate"):
        assert command in text


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["allign"]) == 2
    assert "error:" in capsys.readouterr().err


def test_exit_codes_are_distinct():
    codes = [UsageError.exit_code, ArtifactError.exit_code, DataError.exit_code, ResourceError.exit_code,
             EXIT_INTERNAL, EXIT_INTERRUPTED]
    assert len(set(codes)) == len(codes) and 0 not in codes and EXIT_REGRESSION not in codes


def test_no_command_is_one_error_line_after_the_help(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "Usage" in captured.out and captured.err == "error: aligneval: missing command; see the help above\n"


def test_console_script_exit_codes_in_a_real_process(tmp_path):
    """Through `python -m aligneval`: the process exit status is the documented code, stderr one line."""
    env_code = "import os, sys; os.environ['ALIGNEVAL_LOG_DIR'] = sys.argv[1]; from aligneval.cli import run_cli; " \
               "sys.argv = ['aligneval'] + sys.argv[2:]; run_cli()"
    for argv, code in ((["suites", "show", "acuracy"], 2), (["report", str(tmp_path / "none")], 3), (["--version"], 0)):
        out = subprocess.run([sys.executable, "-c", env_code, str(tmp_path / "logs"), *argv],
                             capture_output=True, text=True)
        assert out.returncode == code, (argv, out.stderr)
        assert out.stderr.count("\n") == (0 if code == 0 else 1) and "Traceback" not in out.stderr


def test_ctrl_c_inside_a_command_is_exit_130_with_one_line(monkeypatch, capsys):
    """Typer >= 0.2x turns a KeyboardInterrupt into Exit(130): it still gets the documented line."""
    import aligneval.versions

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(aligneval.versions, "package_versions", interrupted)  # the env command's body calls it
    assert main(["env"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted: finished work is kept; re-run the same command to resume\n"
