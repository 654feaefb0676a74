"""Stored comparisons (comparison.json): one comparison, written once, read by `report` and `gate` alike.

`aligneval report` writes `<out>/comparison.json`. `aligneval gate` (and a re-run of `report`) reads
a stored comparison when it is *fresh* and computes one only when none is fresh, so the report and
the gate can never disagree about a number or a verdict. Fresh means all of:

* same comparison format version;
* the results.json it was computed from (and the `--against` run's) has the same sha256 now
  (size and mtime are stored too, for people; the content decides);
* the same settings: baseline, candidate, resamples, max_resamples, seed, adjust, primary, min_n,
  confidence, alpha, only.

`comparisons()` is the one way to get a run's comparisons (fresh from a stored file, or computed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from aligneval.artifacts import read_json
from aligneval.compare.comparison import COMPARISON_VERSION, Comparison
from aligneval.compare.compute import run_plan
from aligneval.compare.models import find_twins
from aligneval.compare.planning import Plan, plan
from aligneval.compare.rows import ComparisonRow
from aligneval.compare.runs import load
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


def staleness(section: dict[str, Any], plan: Plan) -> str | None:
    """Why a stored comparison does not match `plan`, or None when fresh."""
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


def read_fresh(path: str | Path, plan: Plan) -> tuple[Comparison | None, str]:
    """(Comparison, "") when `path` holds a fresh comparison for `plan`, else (None, why not)."""
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
    try:
        rows = [ComparisonRow.from_dict(r) if isinstance(r, dict) else _bad_row(path) for r in section["records"]]
    except ArtifactError as err:
        return None, f"{path}: {err.message}"
    comp = Comparison(s["baseline"], s["candidate"], rows, plan.cand_res, plan.base_res,
                      dict(section.get("settings") or {}), list(section.get("warnings") or []),
                      dict(section.get("inputs") or {}), source=str(path))
    return comp, ""


def _bad_row(path) -> ComparisonRow:
    raise ArtifactError(f"{path}: corrupt comparison document (a record is not an object)")


def load_or_compare(plan: Plan, paths: Iterable[str | Path] = (), progress=None) -> Comparison:
    """The first fresh stored comparison among `paths`, else a new one (`comp.source == "computed"`,
    `comp.stale` lists why each stored file was not used)."""
    reasons = []
    for path in paths:
        comp, why = read_fresh(path, plan)
        if comp is not None:
            return comp
        reasons.append(why)
    comp = run_plan(plan, progress)
    comp.stale = [r for r in reasons if not r.endswith(": not found")]
    return comp


def comparisons(run, *, baseline: str = "baseline", candidate: str | list[str] | None = None, against=None,
                stored: Iterable[str | Path] = (), every_twin: bool = True, compute: bool = True, progress=None,
                **settings) -> list[Comparison]:
    """The one way to get a run's comparisons, fresh or from comparison.json.

    One comparison per candidate: `candidate` (a name or a list of names), or, when it is None and
    `every_twin`, every twin of the baseline if the run holds several (else the only other model).
    Each is read from the first fresh file among `stored` (`comp.source` names it), else computed
    (`comp.source == "computed"`, `comp.stale` says why each stored file was passed over); with
    `compute=False` a comparison without a fresh stored file is left out. `settings`: those of
    `aligneval.compare.plan` (resamples, seed, adjust, min_n, max_resamples, confidence, alpha, ...).
    """
    results = load(run)
    if isinstance(candidate, (list, tuple)):
        names: list[str | None] = list(candidate)
    elif candidate is None and against is None and every_twin:
        twins = find_twins(results, baseline)
        names = list(twins) if len(twins) > 1 else [None]
    else:
        names = [candidate]
    paths = list(stored)
    out = []
    for name in names:
        p = plan(results, baseline, name, against=against, **settings)
        comp = load_or_compare(p, paths, progress) if compute else _first_fresh(p, paths)
        if comp is not None:
            out.append(comp)
    return out


def _first_fresh(plan, paths) -> Comparison | None:
    for path in paths:
        comp = read_fresh(path, plan)[0]
        if comp is not None:
            return comp
    return None
