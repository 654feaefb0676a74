"""comparison.json: one comparison, written once, read by `report` and `gate` alike.

`aligneval report` writes `<out>/comparison.json`. `aligneval gate` (and a re-run of `report`) reads
a stored comparison when it is *fresh* and computes one only when none is fresh, so the report and
the gate can never disagree about a number or a verdict. Fresh means all of:

* same comparison format version;
* the results.json it was computed from (and the `--against` run's) has the same sha256 now
  (size and mtime are stored too, for people; the content decides);
* the same settings: baseline, candidate, resamples, max_resamples, seed, adjust, primary, min_n,
  confidence, alpha, only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from aligneval.artifacts import read_json
from aligneval.errors import ArtifactError

FILE = "comparison.json"
KEYS = ("baseline", "candidate", "resamples", "max_resamples", "seed", "adjust", "primary", "min_n", "confidence",
        "alpha", "only")


def read_sections(path: str | Path) -> list[dict[str, Any]]:
    """The comparison sections of a comparison.json: its "comparison", or each of "comparisons" (a
    report of several twins); unreadable or malformed -> ArtifactError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"comparison not found: {path}")
    doc = read_json(path, "comparison document")
    found = []
    if isinstance(doc, dict):
        many = doc.get("comparisons")
        found = list(many) if isinstance(many, list) and many else [doc.get("comparison")]
    good = [c for c in found if isinstance(c, dict) and isinstance(c.get("records"), list)]
    if not good or len(good) != len(found):
        raise ArtifactError(f"{path}: corrupt comparison document (no 'comparison.records')")
    return good


def staleness(section: dict[str, Any], plan) -> str | None:
    """Why a stored comparison does not match `plan` (aligneval.compare.Plan), or None when fresh."""
    from aligneval.compare import COMPARISON_VERSION

    if section.get("version") != COMPARISON_VERSION:
        return f"format {section.get('version')!r}, this aligneval writes {COMPARISON_VERSION!r}"
    stored = section.get("settings") or {}
    for key in KEYS:
        if _norm(stored.get(key)) != _norm(plan.settings.get(key)):
            return f"{key} was {stored.get(key)!r}, now {plan.settings.get(key)!r}"
    inputs, now = section.get("inputs") or {}, plan.inputs
    for key in ("results", "against"):
        old, new = inputs.get(key), now.get(key)
        if (old is None) != (new is None):
            return f"computed {'with' if old else 'without'} --against" if key == "against" else "no results fingerprint"
        if old is not None and (old.get("sha256") is None or old.get("sha256") != (new or {}).get("sha256")):
            return f"{new.get('path') if new else key} changed since the comparison was written"
    return None


def _norm(v: Any) -> Any:
    """JSON round-trip normal form (tuples become lists, ints stay ints)."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def read_fresh(path: str | Path, plan) -> tuple[Any | None, str]:
    """(Comparison, "") when `path` holds a fresh comparison for `plan`, else (None, why not)."""
    from aligneval.compare import Comparison

    path = Path(path)
    if not path.is_file():
        return None, f"{path}: not found"
    try:
        sections = read_sections(path)
    except ArtifactError as err:
        return None, err.message
    s = plan.settings
    mine = [c for c in sections if (c.get("settings") or {}).get("candidate", c.get("candidate")) == s["candidate"]]
    if not mine:
        return None, f"{path}: stale (no comparison of candidate '{s['candidate']}')"
    why = staleness(mine[0], plan)
    if why:
        return None, f"{path}: stale ({why})"
    section = mine[0]
    comp = Comparison(s["baseline"], s["candidate"], list(section["records"]), plan.cand_res, plan.base_res,
                      dict(section.get("settings") or {}), list(section.get("warnings") or []),
                      dict(section.get("inputs") or {}), source=str(path))
    return comp, ""


def load_or_compare(plan, paths: Iterable[str | Path] = (), progress=None):
    """The first fresh stored comparison among `paths`, else a new one (`comp.source == "computed"`,
    `comp.stale` lists why each stored file was not used)."""
    from aligneval.compare import run_plan

    reasons = []
    for path in paths:
        comp, why = read_fresh(path, plan)
        if comp is not None:
            return comp
        reasons.append(why)
    comp = run_plan(plan, progress)
    comp.stale = [r for r in reasons if not r.endswith(": not found")]
    return comp


def for_report(run, out_file: str | Path, *, baseline: str = "baseline", candidate: str | None = None, against=None,
               progress=None, **settings) -> list:
    """The comparisons a report shows: one per candidate (every twin of the baseline when no candidate
    is named and the run holds several), each read from `out_file` when fresh, else computed."""
    from aligneval.compare import load, plan

    results = load(run)
    names: list[str | None] = [candidate]
    if candidate is None and against is None:
        from aligneval.report.dose import find_twins

        twins = find_twins(results, baseline)
        names = list(twins) if len(twins) > 1 else [None]
    return [load_or_compare(plan(results, baseline, name, against=against, **settings), [out_file], progress)
            for name in names]
