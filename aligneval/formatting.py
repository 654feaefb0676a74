"""How numbers, p-values and data texts are printed, shared by the report, the gate and the CLI tables.

A neutral module (no report, no statistics imports) so that the report and the gate print the same
number the same way: no "−0.0000", a typographic minus, p-values that say when the bootstrap floor was
reached instead of printing the floor as if it were measured.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import Any

TEXT_LIMIT = 220
MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|~"})


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def fmt(v: Any, digits: int = 4) -> str:
    """A value: fixed decimals, thousands separators for integers, "–" when undefined."""
    if _missing(v):
        return "–"
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return f"{int(v):,}"
    text = f"{float(v):.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text.replace("-", "−")  # no "−0.0000"


def fmt_delta(v: Any, digits: int = 4) -> str:
    """A difference: always signed, except one that rounds to 0."""
    if _missing(v):
        return "–"
    text = f"{float(v):+.{digits}f}"
    return text[1:] if float(text) == 0 else text.replace("-", "−")


def fmt_ci(lo: Any, hi: Any, digits: int = 4) -> str:
    if _missing(lo) or _missing(hi):
        return ""
    return f"[{fmt_delta(lo, digits)}, {fmt_delta(hi, digits)}]"


def round_up(x: float) -> float:
    """`x` rounded up to one significant digit (0.001998 -> 0.002): an upper bound stays an upper bound."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x))
    m = math.ceil(round(x / 10 ** e, 9))
    return float(10 ** (e + 1) if m >= 10 else m * 10.0 ** e)


def plain(x: float) -> str:
    """A positive number in plain decimals, as short as it is exact (0.002, 0.0001, 0.05)."""
    text = f"{x:.12f}".rstrip("0").rstrip(".")
    return text or "0"


def fmt_p(p: Any, floor: bool = False, bound: bool = False) -> str:
    """A p-value. `floor`: the bootstrap could not resolve a smaller p (no resample crossed zero), so p
    is printed as a bound, "< 0.002", never as a measurement. `bound`: p derives from a floored p
    (an adjusted p), so it is an upper bound: "≤ 0.040"."""
    if _missing(p):
        return "–"
    if floor:
        return f"< {plain(round_up(float(p)))}"
    text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    return f"≤ {text}" if bound and not text.startswith("<") else text


def sig_digits(values, sig: int = 2) -> int:
    """Decimals that give the largest of `values` `sig` significant digits (0.050 -> 3)."""
    finite = [abs(float(v)) for v in values if not _missing(v) and float(v) != 0]
    if not finite:
        return sig
    return max(0, sig - 1 - math.floor(math.log10(max(finite))))


def fmt_ratio(r: Any) -> str:
    return "–" if _missing(r) else f"{float(r):.2f}×"


def truncate(text: Any, limit: int = TEXT_LIMIT) -> str:
    """Whitespace collapsed, cut at `limit` characters with an ellipsis."""
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def md_escape(text: Any) -> str:
    """Plain text inside a markdown table cell: HTML entities for <, >, & and backslashes for markdown
    syntax, so a dataset text never becomes markup or breaks the table."""
    s = " ".join(str(text if text is not None else "").split())
    return html.escape(s, quote=False).translate(MD_SPECIAL)


esc = md_escape
