"""The Reliability (calibration suite) and Risk–coverage (uncertainty suite) sections, drawn from the
curves the suites stored; a missing curve is said, never derived."""

from __future__ import annotations

from aligneval.errors import ArtifactError
from aligneval.report import displays as D
from aligneval.report.context import slug
from aligneval.report.parts import Section, plot_of
from aligneval.report.sections.base import ReportInput, register_section

# a curve is expected on the splits where the suite storing it recorded its companion metric:
# reliability bins with the calibration suite's ECE (test and ood roles by default, never the dev split
# the temperature is fitted on), risk-coverage with the uncertainty suite's AURC
CURVE_COMPANIONS = {"reliability": ("calibration", "ece@"), "risk_coverage": ("uncertainty", "aurc")}
RELIABILITY_INTRO = (
    "Accuracy against confidence in {bins} equal-width bins (the calibration suite's reliability_bins); the "
    "diagonal is perfect calibration, points below it are over-confident. The bars under each diagram "
    "show where the confidences fall.")
RISK_COVERAGE_INTRO = ("Error rate among the examples kept when abstaining on the least confident ones; lower "
                       "curves are better selective classifiers.")


def _curve_splits(res, key: str) -> set[str]:
    suite, metric = CURVE_COMPANIONS[key]
    return {r.split for r in res.records if r.suite == suite and r.metric.startswith(metric)}


def across_runs(cls, comp, split: str, pair: list[str], labels: list[str]):
    """A two-model display when the baseline lives in another run (--against): one display per run,
    merged under distinct labels. Only for displays keyed by model (reliability, risk-coverage)."""
    a = cls.from_results(comp.baseline_results, split, [pair[0]])
    b = cls.from_results(comp.results, split, [pair[1]])
    field_names = {"bins": "ece", "curves": "aurc"}
    main = "bins" if hasattr(a, "bins") else "curves"
    merged, side = {}, {}
    for label, disp, model in ((labels[0], a, pair[0]), (labels[1], b, pair[1])):
        if model in getattr(disp, main):
            merged[label] = getattr(disp, main)[model]
            side[label] = getattr(disp, field_names[main]).get(model)
    setattr(b, main, merged)
    setattr(b, field_names[main], side)
    b.missing = [labels[0]] * bool(a.missing) + [labels[1]] * bool(b.missing)
    return b


def curve_section(report: ReportInput, key: str, title: str, cls, intro: str) -> list[Section]:
    """One curve section: a plot per split the suite scored, and a line naming any curve not stored."""
    res, pair, labels, colors = report.results, report.pair, report.labels, report.colors
    split_list = list(report.roles) if report.roles else [report.primary]
    plots_, missing, bins = [], [], set()
    scored = _curve_splits(res, key)
    for s in split_list:
        if s is None or s not in scored:  # the suite that stores this curve did not score this split
            continue
        try:
            disp = cls.from_results(res, s, pair) if report.same_run else across_runs(cls, report.first, s, pair,
                                                                                      labels)
        except (ArtifactError, KeyError):
            continue
        missing += [f"{m} on {s}" for m in disp.missing]
        if not (disp.bins if key == "reliability" else disp.curves):
            continue
        if key == "reliability" and disp.n_bins:
            bins.add(disp.n_bins)
        role = report.roles.get(s, "")
        plots_.append(plot_of(f"{key}_{slug(s)}", disp, f"{title} · {s}",
                              f"{title} of {', '.join(labels)} on {s}"
                              + (f" ({role} split)" if role and role != s else ""), colors=colors))
    if not (plots_ or missing):
        return []
    text = intro.format(bins=", ".join(map(str, sorted(bins))) or "the stored")
    lines = [f"No curve stored for {', '.join(missing)} (re-score the run with this aligneval to store it)."] \
        if missing else []
    return [Section(key, title, text, plots_, lines=lines)]


@register_section("reliability", order=20, suites=("calibration",))
def reliability(report: ReportInput) -> list[Section]:
    return curve_section(report, "reliability", "Reliability", D.ReliabilityDisplay, RELIABILITY_INTRO)


@register_section("risk_coverage", order=30, suites=("uncertainty",))
def risk_coverage(report: ReportInput) -> list[Section]:
    return curve_section(report, "risk_coverage", "Risk–coverage", D.RiskCoverageDisplay, RISK_COVERAGE_INTRO)
