"""Typer options built from `aligneval.compare.options.STAT_OPTIONS`, so compare, report and gate
declare each statistics flag (name, default, help) in one place."""

from __future__ import annotations

from typing import Any

import typer

from aligneval.compare.options import STAT_OPTIONS


def stat_option(name: str, *, gate: bool = False) -> Any:
    """The typer option of statistics setting `name`: compare / report form (explicit default), or the
    gate's (default None, so rules.toml's [gate] table can set it)."""
    o = STAT_OPTIONS[name]
    if gate:
        return typer.Option(None, *o.flags, help=o.gate_help)
    return typer.Option(o.default, *o.flags, help=o.help)
