"""The comparison's statistics options, declared once: `aligneval compare`, `aligneval report` and
`aligneval gate` build their flags from this table, and rules.toml's [gate] table takes the same names.

This module imports nothing, so the CLI can build its flags without loading the comparison.
`help` is the text of compare and report (whose defaults are explicit); `gate_help` the gate's, whose
options default to None so that a rules.toml [gate] setting can fill them (the text names the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_RESAMPLES = 1000
MAX_RESAMPLES = 20_000  # cap of the adaptive refinement
DEFAULT_ADJUST = "holm"
DEFAULT_MIN_N = 30


@dataclass(frozen=True)
class StatOption:
    name: str  # the keyword of `aligneval.compare.plan` and the [gate] setting
    flags: tuple[str, ...]
    type: type
    default: Any
    help: str
    gate_help: str | None = None  # None: not a gate option


STAT_OPTIONS: dict[str, StatOption] = {o.name: o for o in (
    StatOption("baseline", ("--baseline", "-b"), str, "baseline", "Baseline model (name or seed group).",
               "Baseline model (default 'baseline')."),
    StatOption("candidate", ("--candidate", "-c"), str, None, "Candidate model (default: the only other model).",
               "Candidate model (default: the only other model)."),
    StatOption("against", ("--against",), str, None, "Take the baseline from this older run or results.json.",
               "An older run or results.json whose baseline model is the reference (e.g. the last release)."),
    StatOption("resamples", ("--resamples",), int, DEFAULT_RESAMPLES, "Bootstrap resamples.",
               f"Bootstrap resamples (default {DEFAULT_RESAMPLES})."),
    StatOption("seed", ("--seed",), int, 0, "Bootstrap seed.", "Bootstrap seed (default 0)."),
    StatOption("holm", ("--holm",), bool, False, "Same as --adjust holm (the default; kept for old scripts)."),
    StatOption("adjust", ("--adjust",), str, DEFAULT_ADJUST,
               "Multiple-comparison adjustment of p-values within each family (the spec's `primary` metrics, "
               "the rest): holm (default), bh (Benjamini-Hochberg) or none.",
               "Multiple-comparison adjustment of p-values within each family: holm (default), bh or none."),
    StatOption("min_n", ("--min-n",), int, DEFAULT_MIN_N,
               "Fewest examples (attacked examples for attacks) for a verdict; below it: 'insufficient'.",
               f"Fewest examples (attacked examples for attacks) for a verdict (default {DEFAULT_MIN_N})."),
    StatOption("max_resamples", ("--max-resamples",), int, MAX_RESAMPLES,
               f"Cap of the adaptive resampling of p-values near a decision (default {MAX_RESAMPLES}).",
               f"Cap of the adaptive resampling (default {MAX_RESAMPLES})."),
    StatOption("confidence", ("--confidence",), float, 0.95, "Interval level."),
)}

GATE_SETTINGS: dict[str, type] = {  # the [gate] table of rules.toml (paths are flags only)
    name: o.type for name, o in STAT_OPTIONS.items() if o.gate_help is not None and name != "against"}
