"""The CLI edge: fast start (no heavy imports for --help), one line and a distinct exit code per failure."""

import subprocess
import sys

from aligneval.cli import main
from aligneval.errors import ArtifactError, DataError, ResourceError, UsageError

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
    codes = [UsageError.exit_code, ArtifactError.exit_code, DataError.exit_code, ResourceError.exit_code]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes
