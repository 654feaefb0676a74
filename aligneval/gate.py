"""The CI gate: rules.toml -> one verdict per rule -> exit code, JUnit XML and a markdown summary.

    "calibration/ece@15 [ood_amazon]" = "candidate <= baseline + 0.005"
    "accuracy/accuracy [test]"        = "no significant drop at 0.05"
    "accuracy/accuracy [test]"        = "no significant drop at 0.05 (raw p)"  # unadjusted p
    "accuracy/accuracy [test]"        = "candidate >= 0.80"
    "calibration/ece@15 [ood*]"       = "candidate <= baseline + 0.5pt"     # split wildcard, percentage points

Key: `[suite/]metric [split]` (split may use * and ?). Value forms:
  candidate OP baseline [(+|-) X[pt|%]]   OP in <=, <, >=, >; pt = percentage points (x 0.01), % = of baseline
  candidate OP X[pt]                      an absolute threshold
  no significant (drop|regression) at ALPHA [(raw p)]
                                          fails when the paired test finds a change in the metric's worse
                                          direction (direction from the metric's metadata), using the
                                          comparison's adjusted p unless the rule says (raw p)
The numbers come from the same comparison the report shows: a fresh comparison.json is read, and only
a missing or stale one is recomputed (aligneval.compare.comparisons). A significance rule on a row below
the minimum size has no verdict: it is reported as "insufficient" (a JUnit error, exit 4 unless a rule
found a regression). An optional [gate] table sets baseline, candidate, resamples, seed, adjust, min_n,
max_resamples. Exit codes: 0 pass, 1 regression, 2 usage or rules error (naming the line), 3 missing or
corrupt artifacts, 4 unusable data (runs that cannot be paired, too few examples for a verdict).
"""

from __future__ import annotations

import fnmatch
import operator
import os
import re
import socket
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from aligneval.compare import ComparisonRow, comparisons, multiplicity, plan, run_label
from aligneval.compare.options import GATE_SETTINGS
from aligneval.errors import EXIT_OK, EXIT_REGRESSION, ArtifactError, DataError, UsageError
from aligneval.formatting import esc, fmt, fmt_ci, fmt_delta, fmt_p
from aligneval.metrics import base_metric_name, get_metric, metric_names
from aligneval.paths import check_output_file
from aligneval.registry import did_you_mean

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge,
                                                  ">": operator.gt}
NUM = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
KEY_RE = re.compile(r"^\s*(?:(?P<suite>[A-Za-z0-9_.\-]+)/)?(?P<metric>[A-Za-z0-9_.:@\-]+)\s*\[\s*(?P<split>[^\]\s]+)\s*\]\s*$")
RELATIVE_RE = re.compile(rf"^candidate\s*(?P<op><=|>=|<|>)\s*baseline\s*(?:(?P<sign>[-+])\s*(?P<x>{NUM})\s*(?P<unit>pt|%)?)?$")
ABSOLUTE_RE = re.compile(rf"^candidate\s*(?P<op><=|>=|<|>)\s*(?P<neg>-)?\s*(?P<x>{NUM})\s*(?P<unit>pt)?$")
SIGNIFICANCE_RE = re.compile(rf"^no\s+significant\s+(?:drop|regression)\s+at\s+(?P<alpha>{NUM})"
                             r"(?P<raw>\s*\(\s*raw(?:\s+p)?\s*\))?$")
SETTINGS = GATE_SETTINGS  # the [gate] table: the statistics options the gate takes
PLAN_SETTINGS = ("resamples", "seed", "adjust", "min_n", "max_resamples", "primary", "confidence", "alpha")
FORMS = ('"candidate <= baseline + 0.01"', '"candidate >= 0.80"', '"no significant drop at 0.05"',
         '"no significant drop at 0.05 (raw p)"')


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
    raw: bool = False  # significance on the unadjusted p

    def where(self, path: str) -> str:
        return f"{path}:{self.line}"


PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"


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
    status: str = ""  # pass | fail | insufficient (no verdict: too few examples)

    def __post_init__(self):
        if not self.status:
            self.status = PASS if self.passed else FAIL

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
    comparison: str = ""  # the comparison.json read, or "computed" (with why stored ones were not used)
    confidence: float = 0.95  # the level of the comparison's intervals (for the annotations' text)

    def title(self) -> str:
        """`aligned (runs/ci) vs baseline (releases/v3/run)`: which run each side came from."""
        def side(model: str, run: str) -> str:
            return f"{model} ({run})" if run else model

        return f"{side(self.candidate, self.run)} vs {side(self.baseline, self.against)}"

    @property
    def failures(self) -> list[Outcome]:
        """Rules that found a regression."""
        return [o for o in self.outcomes if o.status == FAIL]

    @property
    def insufficient(self) -> list[Outcome]:
        """Significance rules with no verdict: too few examples."""
        return [o for o in self.outcomes if o.status == INSUFFICIENT]

    @property
    def exit_code(self) -> int:
        """1 when a rule found a regression; else 4 (DataError's code) when a significance rule had too
        few examples for a verdict; else 0."""
        if self.failures:
            return EXIT_REGRESSION
        return DataError.exit_code if self.insufficient else EXIT_OK


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
    metric = m["metric"]  # checked against the run's records (any record, e.g. `temperature`, can be gated)
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
        return Rule(kind="significance", alpha=alpha, raw=bool(r["raw"]), **base)
    raise UsageError(f"{where}: cannot read rule '{key}' = \"{value}\"; write one of {', '.join(FORMS)}")


def load_rules(path: str | Path) -> tuple[list[Rule], dict[str, Any]]:
    """Rules and [gate] settings from a TOML file; every problem is a UsageError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"rules file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
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
        if k == "adjust":
            try:
                multiplicity.check_method(v)
            except UsageError as err:
                raise UsageError(f"{path}:{line}: [gate] adjust: {err.message}") from None
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


def _known_metric(metric: str) -> bool:
    """A metric name the registry knows (with any prefix): a rule on it may just lack its suite's records."""
    try:
        get_metric(base_metric_name(metric))
    except UsageError:
        return False
    return True


def _expand(rule: Rule, records, path: str) -> list[tuple[str, Any]]:
    """(split, candidate record) pairs the rule applies to; missing ones -> ArtifactError / UsageError."""
    matches = [r for r in records if r.metric == rule.metric and (rule.suite is None or r.suite == rule.suite)]
    if not matches:
        target = f"{rule.suite}/{rule.metric}" if rule.suite else rule.metric
        recorded = sorted({r.metric for r in records})
        if rule.metric in recorded:  # the metric is there, under another suite
            known = sorted({f"{r.suite}/{r.metric}" for r in records if r.metric == rule.metric})
            raise UsageError(f"{rule.where(path)}: no records for '{target}'{did_you_mean(target, known)}; "
                             f"'{rule.metric}' is recorded by {', '.join(known)}")
        if not _known_metric(rule.metric) or ":" in rule.metric:
            hint = did_you_mean(rule.metric, recorded) or did_you_mean(rule.metric, list(metric_names()))
            raise UsageError(f"{rule.where(path)}: unknown metric '{rule.metric}'{hint}; the run records "
                             f"{', '.join(recorded) or 'nothing'}")
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


def _p_text(row: ComparisonRow, raw: bool) -> str:
    """The p a rule used, as the report prints it ("< 0.002" at the bootstrap floor)."""
    floor = bool(row.p_floor)
    if raw:
        return f"raw p = {fmt_p(row.p_value_raw, floor=floor)}"
    adjusted = row.adjust not in (None, "none")
    label = f"{row.adjust}-adjusted p" if adjusted else "p"
    text = fmt_p(row.p_value, floor=floor and not adjusted, bound=floor and adjusted)
    return f"{label} {text if text[:1] in '<≤' else '= ' + text}"


def evaluate(rule: Rule, split: str, cand_rec, row: ComparisonRow | None, path: str) -> Outcome:
    """Pass/fail for one rule on one split, with a one-line explanation. Values come from the
    comparison row when there is one (the numbers the report shows), else from the record."""
    value = row.candidate if row is not None and row.candidate is not None else cand_rec.value
    if value is None:
        return Outcome(rule, split, False, f"{rule.metric} [{split}] is undefined (no value) for the candidate")
    if rule.kind == "absolute":
        ok = OPS[rule.op](value, rule.threshold)
        paired = row if row is not None and row.baseline is not None else None  # Δ for the annotations
        text = f"candidate {fmt(value)} {rule.op} {fmt(rule.threshold)}: {'holds' if ok else 'violated'}"
        if paired is None:
            return Outcome(rule, split, ok, text, None, value, None, None, (None, None))
        return Outcome(rule, split, ok, text, paired.baseline, value, paired.delta, paired.p_value,
                       (paired.ci_low, paired.ci_high))
    if row is None or row.baseline is None:
        raise ArtifactError(f"{rule.where(path)}: no baseline value for {rule.metric} [{split}] to compare with")
    base, delta = row.baseline, row.delta
    ci = (row.ci_low, row.ci_high)
    if rule.kind == "relative":
        bound = base * (1 + rule.margin / 100) if rule.relative_margin else base + rule.margin
        ok = OPS[rule.op](value, bound)
        return Outcome(rule, split, ok, f"candidate {fmt(value)} {rule.op} {fmt(bound)} "
                       f"(baseline {fmt(base)}{'' if not rule.margin else f' {fmt_delta(rule.margin)}' + ('%' if rule.relative_margin else '')}): "
                       f"{'holds' if ok else 'violated'}", base, value, delta, row.p_value, ci)
    p = row.p_value_raw if rule.raw else row.p_value
    hib = row.higher_is_better
    if row.verdict == "insufficient":
        why = row.verdict_reason or "too few examples"
        return Outcome(rule, split, False, f"no verdict: {why} (--min-n); a significance rule cannot pass "
                       "on too little data", base, value, delta, p, ci, status=INSUFFICIENT)
    if p is None or hib is None:
        raise UsageError(f"{rule.where(path)}: '{rule.text}' needs a paired test, but {rule.metric} [{split}] has "
                         "no per-example data or no direction; use a threshold rule instead")
    worse = delta is not None and delta != 0 and ((delta < 0) == bool(hib))
    significant = p < rule.alpha
    ok = not (worse and significant)
    what = "drop" if hib else "increase"
    msg = (f"Δ {fmt_delta(delta)} (baseline {fmt(base)} → candidate {fmt(value)}), {_p_text(row, rule.raw)}: "
           + (f"significant {what} at {rule.alpha}" if not ok else
              ("no significant change" if not significant else "a significant improvement")))
    return Outcome(rule, split, ok, msg, base, value, delta, p, ci)


def default_comparisons(run) -> list[Path]:
    """Where a stored comparison.json may be, in order: next to the run's results.json (what
    `aligneval compare` writes), `reports/<run name>/comparison.json` (what `aligneval report RUN`
    writes by default) and the run folder's parent (the demo's `<out>/run` beside `<out>/`)."""
    run = Path(run)
    run_dir = run if run.is_dir() else run.parent
    return [run_dir / "comparison.json", Path("reports") / run_dir.resolve().name / "comparison.json",
            run_dir / ".." / "comparison.json"]  # the demo's layout: <out>/run next to <out>/comparison.json


def gate(run, rules, *, against=None, baseline: str | None = None, candidate: str | None = None,
         junit: str | Path | None = None, summary: str | Path | None = None, resamples: int | None = None,
         seed: int | None = None, adjust: str | None = None, min_n: int | None = None,
         max_resamples: int | None = None, comparison: str | Path | None = None) -> GateResult:
    """Check every rule; write JUnit XML and a markdown summary ($GITHUB_STEP_SUMMARY when set).

    `comparison`: the comparison.json to read (default: `default_comparisons(run)`); it is used when
    fresh for these settings, else the comparison is recomputed (never written: the gate's only
    outputs are the JUnit XML and the summary)."""
    start = time.perf_counter()
    rules_path = str(rules)
    rule_list, settings = load_rules(rules)
    for flag, out in (("--junit", junit), ("--summary", summary),
                      ("$GITHUB_STEP_SUMMARY", None if summary else os.environ.get("GITHUB_STEP_SUMMARY"))):
        if out:
            check_output_file(out, flag)  # every output location, before any work
    p = plan(run, baseline or settings.get("baseline", "baseline"), candidate or settings.get("candidate"),
             resamples=resamples if resamples is not None else settings.get("resamples", 1000),
             seed=seed if seed is not None else settings.get("seed", 0),
             adjust=adjust or settings.get("adjust", multiplicity.DEFAULT_ADJUST),
             min_n=min_n if min_n is not None else settings.get("min_n", multiplicity.DEFAULT_MIN_N),
             max_resamples=max_resamples if max_resamples is not None else settings.get("max_resamples"),
             against=against)
    cand_res = p.cand_res
    cand_records = _records(cand_res, p.cand_models[0])
    expanded = [(rule, split, rec) for rule in rule_list for split, rec in _expand(rule, cand_records, rules_path)]
    paths = [Path(comparison)] if comparison is not None else default_comparisons(run)
    if comparison is not None and not Path(comparison).is_file():
        raise ArtifactError(f"comparison not found: {comparison}")
    # thresholds alone need no comparison, but use a fresh stored one so the values match the report
    needed = any(rule.kind != "absolute" for rule, _, _ in expanded) or len(p.cand_models) > 1
    found = comparisons(p.cand_res, baseline=p.settings["baseline"], candidate=p.settings["candidate"],
                        against=p.base_res if p.against else None, stored=paths, every_twin=False, compute=needed,
                        **{k: p.settings[k] for k in PLAN_SETTINGS})
    comp = found[0] if found else None
    rows = {r.key: r for r in comp.records} if comp is not None else {}
    outcomes = [evaluate(rule, split, rec, rows.get((rec.suite, split, rule.metric)), rules_path)
                for rule, split, rec in expanded]
    base_res = p.base_res
    source = "" if comp is None else (comp.source if comp.source != "computed" else
                                     "computed" + (f" ({'; '.join(comp.stale)})" if comp.stale else ""))
    result = GateResult(outcomes, p.settings["baseline"], p.settings["candidate"], time.perf_counter() - start,
                        run=run_label(cand_res), against=run_label(base_res) if base_res is not cand_res else "",
                        comparison=source, confidence=float(p.settings.get("confidence", 0.95)))
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
    """JUnit XML (Jenkins junit schema): one <testcase> per rule and split, <failure> for a regression,
    <error> for a significance rule without a verdict (too few examples)."""
    n, f, e = len(result.outcomes), len(result.failures), len(result.insufficient)
    secs = f"{result.seconds:.3f}"
    root = ET.Element("testsuites", name="aligneval gate", tests=str(n), failures=str(f), errors=str(e), time=secs)
    suite = ET.SubElement(root, "testsuite", name="aligneval gate", tests=str(n), failures=str(f), errors=str(e),
                          skipped="0", time=secs,
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname() or "localhost")
    props = ET.SubElement(suite, "properties")
    for k, v in (("baseline", result.baseline), ("candidate", result.candidate), ("rules", rules_path),
                 ("run", result.run), ("against", result.against), ("comparison", result.comparison)):
        if v:
            ET.SubElement(props, "property", name=k, value=str(v))
    for o in result.outcomes:
        case = ET.SubElement(suite, "testcase", name=o.name, classname=f"aligneval.gate.{o.split}", time="0")
        if o.status == FAIL:
            fail = ET.SubElement(case, "failure", message=o.message, type="regression")
            fail.text = f"{o.rule.key} = \"{o.rule.text}\" ({rules_path}:{o.rule.line})\n{o.message}"
        elif o.status == INSUFFICIENT:
            err = ET.SubElement(case, "error", message=o.message, type="insufficient-data")
            err.text = f"{o.rule.key} = \"{o.rule.text}\" ({rules_path}:{o.rule.line})\n{o.message}"
        else:
            ET.SubElement(case, "system-out").text = o.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: GateResult, path: str | Path, rules_path: str = "rules.toml") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(result, rules_path), encoding="utf-8")
    return path


STATUS_MD = {PASS: "✅ pass", FAIL: "❌ fail", INSUFFICIENT: "⚠️ no verdict"}


def headline(result: GateResult) -> str:
    """`passed`, `2 regression(s)`, `1 rule(s) without a verdict (too few examples)`."""
    parts = []
    if result.failures:
        parts.append(f"{len(result.failures)} regression(s)")
    if result.insufficient:
        parts.append(f"{len(result.insufficient)} rule(s) without a verdict (too few examples)")
    return "; ".join(parts) or "passed"


def markdown_summary(result: GateResult) -> str:
    mark = "❌" if result.failures else ("⚠️" if result.insufficient else "✅")
    lines = [f"### aligneval gate: {mark} {headline(result)}", "",
             f"candidate `{result.candidate}`" + (f" ({esc(result.run)})" if result.run else "")
             + f" vs baseline `{result.baseline}`" + (f" ({esc(result.against)})" if result.against else ""), "",
             "| rule | check | result | details |", "| --- | --- | --- | --- |"]
    for o in result.outcomes:
        lines.append(f"| {esc(o.name)} | {esc(o.rule.text)} | {STATUS_MD[o.status]} | {esc(o.message)} |")
    if result.comparison:
        lines += ["", f"comparison: {esc(result.comparison)}"]
    return "\n".join(lines) + "\n\n"


# ----------------------------------------------------------------------------------------------
# GitHub Actions annotations (workflow commands)


def threshold_text(rule: Rule) -> str:
    """What the rule demands, in the rule's own terms: `≤ baseline + 0.0100`, `≥ 0.6000`, `p ≥ 0.05`."""
    op = {"<=": "≤", "<": "<", ">=": "≥", ">": ">"}.get(rule.op or "", rule.op or "")
    if rule.kind == "absolute":
        return f"candidate {op} {fmt(rule.threshold)}"
    if rule.kind == "relative":
        margin = "" if not rule.margin else f" {fmt_delta(rule.margin)}{'%' if rule.relative_margin else ''}"
        return f"candidate {op} baseline{margin}"
    return f"no significant change in the worse direction at α = {rule.alpha}" + (" (raw p)" if rule.raw else "")


def annotation_text(outcome: Outcome, confidence: float = 0.95) -> str:
    """One line: the rule, the observed Δ with its interval, the threshold, and the gate's explanation."""
    ci = fmt_ci(*outcome.ci)
    observed = ("Δ " + fmt_delta(outcome.delta) + (f" ({confidence:.0%} CI {ci})" if ci else " (no interval)")
                if outcome.delta is not None else f"candidate {fmt(outcome.candidate)}")
    return (f"rule {outcome.name} = \"{outcome.rule.text}\": observed {observed}; threshold: "
            f"{threshold_text(outcome.rule)}; {outcome.message}")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(result: GateResult, rules_path: str | None = None) -> list[str]:
    """`::error` for each failed rule and `::warning` for each rule without a verdict, as GitHub Actions
    workflow commands (printed to stdout, they become annotations on the job page). With `rules_path`
    each one points at the rule's line in the rules file."""
    kinds = {FAIL: ("error", "regression"), INSUFFICIENT: ("warning", "no verdict")}
    lines = []
    for o in result.outcomes:
        if o.status not in kinds:
            continue
        level, what = kinds[o.status]
        props = [f"title={_escape_property(f'aligneval gate {what}: {o.name}')}"]
        if rules_path and o.rule.line:
            props = [f"file={_escape_property(str(rules_path))}", f"line={o.rule.line}"] + props
        lines.append(f"::{level} {','.join(props)}::{_escape_data(annotation_text(o, result.confidence))}")
    return lines
