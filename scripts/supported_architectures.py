"""Print (or check) README.md's list of supported architectures, generated from the q/k registry.

    python scripts/supported_architectures.py           # print the table
    python scripts/supported_architectures.py --write   # rewrite README.md between the markers
    python scripts/supported_architectures.py --check   # exit 1 if README.md differs from the registry

The table sits between `<!-- architectures:start -->` and `<!-- architectures:end -->` in README.md;
tests/test_architectures.py checks that it equals this output, so a new registry entry cannot be
left out of the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aligneval.align.hooks import ARCHITECTURES  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- architectures:start -->", "<!-- architectures:end -->"


def table() -> str:
    """One markdown row per registered `config.model_type`: where Q and K are taken, and how tested."""
    rows = ["| `model_type` | queries / keys taken from | tested with |", "|---|---|---|"]
    for name, spec in ARCHITECTURES.items():
        rows.append(f"| `{name}` | {spec.describe()} | {spec.tested} |")
    return "\n".join(rows)


def block() -> str:
    return f"{START}\n{table()}\n{END}"


def readme_block(text: str) -> str | None:
    if START not in text or END not in text:
        return None
    return START + text.split(START, 1)[1].split(END, 1)[0] + END


def main(argv: list[str]) -> int:
    text = README.read_text()
    if "--check" in argv:
        if readme_block(text) != block():
            print("README.md's architecture list differs from the registry: "
                  "run python scripts/supported_architectures.py --write", file=sys.stderr)
            return 1
        return 0
    if "--write" in argv:
        current = readme_block(text)
        if current is None:
            print(f"README.md has no {START} … {END} markers", file=sys.stderr)
            return 2
        README.write_text(text.replace(current, block()))
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
