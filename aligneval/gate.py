"""The CI gate: rules.toml -> one verdict per rule -> exit code, JUnit XML and a markdown summary.

    "calibration/ece@15 [ood_amazon]" = "candidate <= baseline + 0.005"
    "accuracy/accuracy [test]"        = "no significant drop at 0.05"
    "accuracy/accuracy [test]"        = "candidate >= 0.80"
    "calibration/ece@15 [ood*]"       = "candidate <= baseline + 0.5pt"     # split wildcard, percentage points

Key: `[suite/]metric [split]` (split may use * and ?). Value forms:
  candidate OP baseline [(+|-) X[pt|%]]   OP in <=, <, >=, >; pt = percentage points (x 0.01), % = of baseline
  candidate OP X[pt]                      an absolute threshold
  no significant (drop|regression) at ALPHA   fails when the paired test finds a change in the metric's
                                              worse direction (direction from the metric's metadata)
An optional [gate] table sets baseline, candidate, resamples, seed. Exit codes: 0 pass, 1 regression,
2 usage or rules error (naming the line), 3 missing or corrupt artifacts.
"""

from __future__ import annotations

import fnmatch
import operator
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aligneval.errors import EXIT_OK, EXIT_REGRESSION, ArtifactError, DataError, UsageError

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge,
                                                  ">": operator.gt}
NUM = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
KEY_RE = re.compile(r"^\s*(?:(?P<suite>[A-Za-z0-9_.\-]+)/)?(?P<metric>[A-Za-z0-9_.:@\-]+)\s*\[\s*(?P<split>[^\]\s]+)\s*\]\s*$")
RELATIVE_RE = re.compile(rf"^candidate\s*(?P<op><=|>=|<|>)\s*baseline\s*(?:(?P<sign>[-+])\s*(?P<x>{NUM})\s*(?P<unit>pt|%)?)?$")
ABSOLUTE_RE = re.compile(rf"^candidate\s*(?P<op><=|>=|<|>)\s*(?P<neg>-)?\s*(?P<x>{NUM})\s*(?P<unit>pt)?$")
SIGNIFICANCE_RE = re.compile(rf"^no\s+significant\s+(?:drop|regression)\s+at\s+(?P<alpha>{NUM})$")
SETTINGS = {"baseline": str, "candidate": str, "resamples": int, "seed": int}
FORMS = ('"candidate <= baseline + 0.01"', '"candidate >= 0.80"', '"no significant drop at 0.05"')


@dataclass(frozen=True)
class Rule:
    key: str
    text: str
    line: int
    suite: str | None
    metric: str
    split: str  # may be a glob
    kind: str  # relative | absolute | significance
    op: str | None = None
    margin: float = 0.0
    relative_margin: bool = False
    threshold: float | None = None
    alpha: float | None = None

    def where(self, path: str) -> str:
        return f"{path}:{self.line}"


@dataclass
class Outcome:
    rule: Rule
    split: str
    passed: bool
    message: str
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    p_value: float | None = None
    ci: tuple[float | None, float | None] = (None, None)

    @property
    def name(self) -> str:
        return f"{self.rule.key}" if self.split == self.rule.split else f"{self.rule.key} → {self.split}"


@dataclass
class GateResult:
    outcomes: list[Outcome]
    baseline: str
    candidate: str
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    run: str = ""  # where the candidate's results came from
    against: str = ""  # where the baseline's came from, when not the same run

    def title(self) -> str:
        """`aligned (runs/ci) vs baseline (releases/v3/run)`: which run each side came from."""
        def side(model: str, run: str) -> str:
            return f"{model} ({run})" if run else model

        return f"{side(self.candidate, self.run)} vs {side(self.baseline, self.against)}"

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.failures else EXIT_OK


# ----------------------------------------------------------------------------------------------
# parsing


def _line_of(text: str, key: str) -> int:
    """1-based line that defines `key` (quoted or bare), 0 if not found."""
    pat = re.compile(r"^\s*(?:\"" + re.escape(key) + r"\"|'" + re.escape(key) + r"'|" + re.escape(key) + r")\s*=")
    for i, line in enumerate(text.splitlines(), 1):
        if pat.match(line):
            return i
    return 0


def _amount(x: str, unit: str | None) -> float:
    v = float(x)
    return v / 100.0 if unit == "pt" else v


def parse_rule(key: str, value: Any, line: int, path: str = "rules.toml") -> Rule:
    where = f"{path}:{line}" if line else path
    if not isinstance(value, str):
        raise UsageError(f"{where}: rule '{key}' must be a string such as {FORMS[0]}, got {type(value).__name__}")
    m = KEY_RE.match(key)
    if not m:
        raise UsageError(f"{where}: rule name '{key}' must look like \"suite/metric [split]\", "
                         "e.g. \"calibration/ece@15 [test]\"")
    from aligneval.stats import base_name, get_metric

    metric = m["metric"]
    try:
        get_metric(base_name(metric))
    except UsageError as err:
        if ":" not in metric:  # prefixed metrics (attack recipes) are checked against the records instead
            raise UsageError(f"{where}: {err.message}") from None
    text = " ".join(value.strip().split())
    base = dict(key=key, text=text, line=line, suite=m["suite"], metric=metric, split=m["split"])
    if r := RELATIVE_RE.match(text):
        margin = 0.0 if not r["x"] else _amount(r["x"], None if r["unit"] == "%" else r["unit"])
        if r["sign"] == "-":
            margin = -margin
        return Rule(kind="relative", op=r["op"], margin=margin, relative_margin=r["unit"] == "%", **base)
    if r := ABSOLUTE_RE.match(text):
        x = _amount(r["x"], r["unit"]) * (-1 if r["neg"] else 1)
        return Rule(kind="absolute", op=r["op"], threshold=x, **base)
    if r := SIGNIFICANCE_RE.match(text):
        alpha = float(r["alpha"])
        if not 0 < alpha < 1:
            raise UsageError(f"{where}: rule '{key}': the significance level must lie between 0 and 1, got {alpha}")
        return Rule(kind="significance", alpha=alpha, **base)
    raise UsageError(f"{where}: cannot read rule '{key}' = \"{value}\"; write one of {', '.join(FORMS)}")


def load_rules(path: str | Path) -> tuple[list[Rule], dict[str, Any]]:
    """Rules and [gate] settings from a TOML file; every problem is a UsageError naming the line."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"rules file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None
    settings: dict[str, Any] = {}
    rules: list[Rule] = []
    table = doc.pop("gate", {}) or {}
    if not isinstance(table, dict):
        raise UsageError(f"{path}:{_line_of(text, 'gate')}: 'gate' must be a table of settings")
    for k, v in table.items():
        line = _line_of(text, k)
        if k not in SETTINGS:
            hint = " (rules go before the [gate] table, or under [rules])" if isinstance(v, str) and "[" in k else ""
            raise UsageError(f"{path}:{line}: unknown [gate] setting '{k}'{hint}; known: {', '.join(SETTINGS)}")
        if not isinstance(v, SETTINGS[k]) or isinstance(v, bool):
            raise UsageError(f"{path}:{line}: [gate] {k} must be a {SETTINGS[k].__name__}")
        settings[k] = v
    entries = doc.pop("rules", None)
    if entries is not None and not isinstance(entries, dict):
        raise UsageError(f"{path}:{_line_of(text, 'rules')}: 'rules' must be a table")
    items = list(doc.items()) + list((entries or {}).items())
    for key, value in items:
        if isinstance(value, dict):
            raise UsageError(f"{path}:{_line_of(text, key) or text.find('[' + key + ']')}: unexpected table "
                             f"[{key}]; rules are top-level lines (or under [rules])")
        rules.append(parse_rule(key, value, _line_of(text, key), str(path)))
    if not rules:
        raise UsageError(f"{path}: no rules; add lines such as \"accuracy/accuracy [test]\" = {FORMS[2]}")
    return rules, settings


# ----------------------------------------------------------------------------------------------
# evaluation


def _records(results, model: str):
    return [r for r in results.records if r.model == model]


def _expand(rule: Rule, records, path: str) -> list[tuple[str, Any]]:
    """(split, candidate record) pairs the rule applies to; missing ones -> ArtifactError / UsageError."""
    matches = [r for r in records if r.metric == rule.metric and (rule.suite is None or r.suite == rule.suite)]
    if not matches:
        known = sorted({f"{r.suite}/{r.metric}" for r in records})
        from aligneval.registry import did_you_mean

        target = f"{rule.suite}/{rule.metric}" if rule.suite else rule.metric
        hint = did_you_mean(target, known)
        if hint or ":" in rule.metric:
            raise UsageError(f"{rule.where(path)}: no records for '{target}'{hint}")
        raise ArtifactError(f"{rule.where(path)}: the results hold no '{target}' record; "
                            "was the suite run? (aligneval run ...)")
    out, seen = [], set()
    for r in matches:
        if fnmatch.fnmatchcase(r.split, rule.split) and r.split not in seen:
            seen.add(r.split)
            out.append((r.split, r))
    if not out:
        splits = sorted({r.split for r in matches})
        raise ArtifactError(f"{rule.where(path)}: no '{rule.metric}' record on split '{rule.split}' "
                            f"(recorded on: {', '.join(splits)})")
    return out


def evaluate(rule: Rule, split: str, cand_rec, row: dict | None, path: str) -> Outcome:
    """Pass/fail for one rule on one split, with a one-line explanation."""
    from aligneval.report.context import fmt, fmt_delta, fmt_p

    value = cand_rec.value
    if value is None:
        return Outcome(rule, split, False, f"{rule.metric} [{split}] is undefined (no value) for the candidate")
    if rule.kind == "absolute":
        ok = OPS[rule.op](value, rule.threshold)
        return Outcome(rule, split, ok, f"candidate {fmt(value)} {rule.op} {fmt(rule.threshold)}: "
                       f"{'holds' if ok else 'violated'}", candidate=value)
    if row is None or row.get("baseline") is None:
        raise ArtifactError(f"{rule.where(path)}: no baseline value for {rule.metric} [{split}] to compare with")
    base, delta = row["baseline"], row["delta"]
    if rule.kind == "relative":
        bound = base * (1 + rule.margin / 100) if rule.relative_margin else base + rule.margin
        ok = OPS[rule.op](value, bound)
        return Outcome(rule, split, ok, f"candidate {fmt(value)} {rule.op} {fmt(bound)} "
                       f"(baseline {fmt(base)}{'' if not rule.margin else f' {fmt_delta(rule.margin)}' + ('%' if rule.relative_margin else '')}): "
                       f"{'holds' if ok else 'violated'}", base, value, delta, row.get("p_value"),
                       (row.get("ci_low"), row.get("ci_high")))
    p, hib = row.get("p_value"), row.get("higher_is_better")
    if p is None or hib is None:
        raise UsageError(f"{rule.where(path)}: '{rule.text}' needs a paired test, but {rule.metric} [{split}] has "
                         "no per-example data or no direction; use a threshold rule instead")
    worse = delta is not None and delta != 0 and ((delta < 0) == bool(hib))
    significant = p < rule.alpha
    ok = not (worse and significant)
    what = "drop" if hib else "increase"
    msg = (f"Δ {fmt_delta(delta)} (baseline {fmt(base)} → candidate {fmt(value)}), p = {fmt_p(p)}: "
           + (f"significant {what} at {rule.alpha}" if not ok else
              ("no significant change" if not significant else "a significant improvement")))
    return Outcome(rule, split, ok, msg, base, value, delta, p, (row.get("ci_low"), row.get("ci_high")))


def gate(run, rules, *, against=None, baseline: str | None = None, candidate: str | None = None,
         junit: str | Path | None = None, summary: str | Path | None = None, resamples: int | None = None,
         seed: int | None = None) -> GateResult:
    """Check every rule; write JUnit XML and a markdown summary ($GITHUB_STEP_SUMMARY when set)."""
    from aligneval.compare import compare, load, model_groups, pick_group, run_label

    start = time.perf_counter()
    rules_path = str(rules)
    rule_list, settings = load_rules(rules)
    baseline = baseline or settings.get("baseline", "baseline")
    candidate = candidate or settings.get("candidate")
    resamples = resamples if resamples is not None else settings.get("resamples", 1000)
    seed = seed if seed is not None else settings.get("seed", 0)
    cand_res = load(run)
    base_res = load(against) if against is not None else cand_res
    cand_groups = model_groups([r.model for r in cand_res.records])
    if candidate is None:
        others = [g for g in cand_groups if against is not None or g != baseline]
        if against is not None and len(others) > 1:
            others = [g for g in others if g != baseline] or others
        if len(others) != 1:
            raise UsageError(f"pick the candidate with --candidate: models in {run_label(cand_res)} are "
                             f"{', '.join(sorted(cand_groups))}")
        candidate = others[0]
    cand_model = pick_group(cand_groups, candidate, run_label(cand_res))[0]
    cand_records = _records(cand_res, cand_model)
    expanded = [(rule, split, rec) for rule in rule_list for split, rec in _expand(rule, cand_records, rules_path)]
    needs_pair = {(rule.metric, split) for rule, split, _ in expanded if rule.kind != "absolute"}
    rows: dict[tuple[str, str, str], dict] = {}
    if needs_pair:
        try:
            comp = compare(cand_res, baseline, candidate, resamples=resamples, seed=seed, against=base_res,
                           only=needs_pair)
        except DataError as err:  # runs that cannot be paired are mismatched artifacts for the gate (exit 3)
            raise ArtifactError(err.message) from None
        rows = {(r["suite"], r["split"], r["metric"]): r for r in comp.records}
    outcomes = [evaluate(rule, split, rec, rows.get((rec.suite, split, rule.metric)), rules_path)
                for rule, split, rec in expanded]
    result = GateResult(outcomes, baseline, candidate, time.perf_counter() - start, run=run_label(cand_res),
                        against=run_label(base_res) if base_res is not cand_res else "")
    if junit:
        result.files["junit"] = str(write_junit(result, junit, rules_path))
    target = summary or os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(markdown_summary(result))
        result.files["summary"] = str(target)
    return result


# ----------------------------------------------------------------------------------------------
# outputs


def junit_xml(result: GateResult, rules_path: str = "rules.toml") -> str:
    """JUnit XML (Jenkins junit schema): one <testcase> per rule and split, <failure> for a regression."""
    import socket
    import xml.etree.ElementTree as ET
    from datetime import datetime, timezone

    n, f = len(result.outcomes), len(result.failures)
    secs = f"{result.seconds:.3f}"
    root = ET.Element("testsuites", name="aligneval gate", tests=str(n), failures=str(f), errors="0", time=secs)
    suite = ET.SubElement(root, "testsuite", name="aligneval gate", tests=str(n), failures=str(f), errors="0",
                          skipped="0", time=secs,
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname() or "localhost")
    props = ET.SubElement(suite, "properties")
    for k, v in (("baseline", result.baseline), ("candidate", result.candidate), ("rules", rules_path),
                 ("run", result.run), ("against", result.against)):
        if v:
            ET.SubElement(props, "property", name=k, value=str(v))
    for o in result.outcomes:
        case = ET.SubElement(suite, "testcase", name=o.name, classname=f"aligneval.gate.{o.split}", time="0")
        if not o.passed:
            fail = ET.SubElement(case, "failure", message=o.message, type="regression")
            fail.text = f"{o.rule.key} = \"{o.rule.text}\" ({rules_path}:{o.rule.line})\n{o.message}"
        else:
            ET.SubElement(case, "system-out").text = o.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: GateResult, path: str | Path, rules_path: str = "rules.toml") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(result, rules_path), encoding="utf-8")
    return path


def markdown_summary(result: GateResult) -> str:
    from aligneval.report.markdown import esc

    head = "✅ passed" if not result.failures else f"❌ {len(result.failures)} regression(s)"
    lines = [f"### aligneval gate: {head}", "",
             f"candidate `{result.candidate}`" + (f" ({esc(result.run)})" if result.run else "")
             + f" vs baseline `{result.baseline}`" + (f" ({esc(result.against)})" if result.against else ""), "",
             "| rule | check | result | details |", "| --- | --- | --- | --- |"]
    for o in result.outcomes:
        lines.append(f"| {esc(o.name)} | {esc(o.rule.text)} | {'✅ pass' if o.passed else '❌ fail'} | {esc(o.message)} |")
    return "\n".join(lines) + "\n\n"
