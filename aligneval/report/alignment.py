"""The Alignment section's numbers: K–Q diagnostics per layer and head, read from comparison records.

The `alignment` suite records `kq_mmd2`, `kq_probe_acc` and `attn_entropy` overall (mean over layers ×
heads), per layer (`kq_mmd2@L3`, 0-based) and per head (`kq_mmd2@L3H5`); the comparison gives each a
paired interval. This module sorts those rows into grids and writes the headline sentence; it computes
no diagnostic itself (grid cells are record values, differences are comparison deltas).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from aligneval.compare import ComparisonRow
from aligneval.formatting import fmt, fmt_delta, fmt_ratio, sig_digits
from aligneval.records import Record

SUITE = "alignment"
FAMILIES = {"kq_mmd2": "K–Q MMD²", "kq_probe_acc": "K-vs-Q probe accuracy", "attn_entropy": "attention entropy"}
HEADLINE = ("kq_mmd2", "kq_probe_acc")  # the only alignment rows in the headline table
HEATMAPS = ("kq_mmd2", "kq_probe_acc")
GAP = "kq_mmd2"  # "the K–Q gap" of the headline sentence and the dose–response figure
# the diagnostics' places in the report's tables, after the registered metrics (aligneval.metrics orders)
ORDER = {"kq_mmd2": 120, "kq_probe_acc": 130, "attn_entropy": 140}
_METRIC = re.compile(r"^(?P<family>[^@:]+)@L(?P<layer>\d+)(?:H(?P<head>\d+))?$")

NO_DIAGNOSTICS = ("This run has no alignment diagnostics, so this report cannot tell \"alignment does not help\" "
                  "from \"alignment never happened\": add the alignment suite to the spec ([suites.alignment]).")


def parse(metric: str) -> tuple[str, int | None, int | None]:
    """`kq_mmd2@L3H5` -> ('kq_mmd2', 3, 5); `kq_mmd2@L3` -> ('kq_mmd2', 3, None); `kq_mmd2` -> (.., None, None)."""
    m = _METRIC.match(metric)
    if not m:
        return metric, None, None
    head = m["head"]
    return m["family"], int(m["layer"]), None if head is None else int(head)


def is_alignment(row: ComparisonRow | Record) -> bool:
    return row.suite == SUITE or parse(row.metric)[0] in FAMILIES


def is_detail(row: ComparisonRow | Record) -> bool:
    """A per-layer or per-head alignment row: shown in the Alignment section only."""
    return is_alignment(row) and parse(row.metric)[1] is not None


def in_headline(row: ComparisonRow) -> bool:
    return row.metric in HEADLINE


def label(metric: str) -> str:
    family, layer, head = parse(metric)
    name = FAMILIES.get(family, family.replace("_", " "))
    if layer is None:
        return name
    return f"{name} · layer {layer}" + ("" if head is None else f" head {head}")


def split_of(rows: list[ComparisonRow], primary: str | None) -> str | None:
    """The split the alignment diagnostics were recorded on: the primary split if it has them."""
    splits = [r.split for r in rows if is_alignment(r) and r.metric == GAP]
    splits = splits or [r.split for r in rows if is_alignment(r)]
    if not splits:
        return None
    return primary if primary in splits else splits[0]


def shape(results, split: str, family: str, rows: list[ComparisonRow]) -> tuple[int, int]:
    """(layers, heads): the records' `n_layers` / `n_heads`, else the largest index seen + 1."""
    n_layers = n_heads = 0
    for r in getattr(results, "records", []) or []:
        fam, layer, head = parse(r.metric)
        if r.split == split and fam == family and layer is not None:
            extra = r.extra or {}
            n_layers = max(n_layers, int(extra.get("n_layers") or 0), layer + 1)
            n_heads = max(n_heads, int(extra.get("n_heads") or 0), (head + 1) if head is not None else 0)
    for r in rows:
        fam, layer, head = parse(r.metric)
        if r.split == split and fam == family and layer is not None:
            n_layers = max(n_layers, layer + 1)
            n_heads = max(n_heads, (head + 1) if head is not None else 0)
    return n_layers, n_heads


@dataclass
class Grid:
    """One diagnostic of one comparison on a grid (per head: [layers, heads]; per layer: [layers])."""

    baseline: np.ndarray
    candidate: np.ndarray
    delta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """Cells whose interval of the difference excludes 0."""
        with np.errstate(invalid="ignore"):
            return (self.ci_low > 0) | (self.ci_high < 0)

    @property
    def empty(self) -> bool:
        return bool(np.all(np.isnan(self.baseline)) and np.all(np.isnan(self.candidate)))


def _value(v: Any) -> float:
    return np.nan if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def grid(rows: list[ComparisonRow], split: str, family: str, dims: tuple[int, ...]) -> Grid:
    """Comparison rows of `family` on `split` placed on a grid of `dims` ((layers, heads) for heads,
    (layers,) for layers); cells without a row are NaN."""
    arrays = {k: np.full(dims, np.nan) for k in ("baseline", "candidate", "delta", "ci_low", "ci_high")}
    per_head = len(dims) == 2
    for r in rows:
        fam, layer, head = parse(r.metric)
        if r.split != split or fam != family or layer is None or (head is not None) != per_head:
            continue
        idx = (layer, head) if per_head else (layer,)
        if any(i >= d for i, d in zip(idx, dims)):
            continue
        for k, a in arrays.items():
            a[idx] = _value(getattr(r, k))
    return Grid(**arrays)


def overall(rows: list[ComparisonRow], split: str | None, family: str = GAP) -> ComparisonRow | None:
    return next((r for r in rows if r.split == split and r.metric == family), None)


def headline_sentence(rows: list[ComparisonRow], split: str | None, confidence: float, twin: str | None = None,
                      recorded_for: list[str] | None = None) -> str:
    """'Alignment: the twin's K–Q MMD² is 0.62× the baseline's (0.031 vs 0.050; Δ −0.019, 95% CI [...])'.
    `recorded_for`: the models that have alignment records (for the sentence when the pair has none)."""
    who = f"Alignment ({twin})" if twin else "Alignment"
    gap = overall(rows, split)
    if gap is None:
        if recorded_for:
            return (f"{who}: only {', '.join(recorded_for)} has alignment diagnostics, so the K–Q gap of the pair "
                    "cannot be compared; run the alignment suite on both models.")
        return NO_DIAGNOSTICS
    base, cand = gap.baseline, gap.candidate
    if base is None or cand is None:
        return f"{who}: the K–Q MMD² is undefined for {'the baseline' if base is None else 'the twin'}."
    digits = sig_digits([base, cand], 2)
    ratio = f"{fmt_ratio(cand / base)} the baseline's" if base > 0 else "compared with the baseline's"
    lo, hi = gap.ci_low, gap.ci_high
    interval = (f"Δ {fmt_delta(gap.delta, digits)}, {confidence:.0%} CI [{fmt_delta(lo, digits)}, "
                f"{fmt_delta(hi, digits)}]") if lo is not None and hi is not None else \
        f"Δ {fmt_delta(gap.delta, digits)}, no interval (no per-example values)"
    text = f"{who}: the twin's K–Q MMD² is {ratio} ({fmt(cand, digits)} vs {fmt(base, digits)}; {interval})"
    probe = overall(rows, split, "kq_probe_acc")
    if probe is not None and probe.baseline is not None and probe.candidate is not None:
        text += (f"; a linear probe tells its keys from its queries with accuracy {probe.candidate:.2f} vs "
                 f"{probe.baseline:.2f} (0.5 = indistinguishable)")
    if lo is not None and hi is not None:
        if hi < 0:
            text += ": the twin's keys are measurably closer to its queries"
        elif lo > 0:
            text += ": the twin's keys moved away from its queries"
        else:
            text += ": no measurable change, so the twin may not be aligned at all"
    return text + "."


# what the alignment rows' intervals cover, said wherever they are shown
FIXED_PARTS = ("These intervals resample the measured sentences only. The probe, fitted once on the training "
               "half, is held fixed, so the probe-accuracy intervals leave out its refit and are narrower than "
               "that diagnostic's whole uncertainty; the MMD² bandwidth is each sentence's own median distance "
               "(resampled with it), at fixed kernel scales.")
INTRO = ("Keys and queries of every attention head, measured by the alignment suite on {split}: the K–Q MMD² "
         "(RBF kernel; 0 = keys and queries have the same distribution), the held-out accuracy of a linear probe "
         "telling keys from queries (0.5 = indistinguishable) and the attention entropy. A twin that is really "
         "aligned has a lower MMD² and a probe accuracy closer to 0.5 than its baseline. Differences are paired "
         "over the same examples with {conf} intervals; a circle in a difference map marks a head whose "
         "interval excludes 0. " + FIXED_PARTS + " Per-layer and per-head rows appear here only (and in "
         "comparison.json).")
