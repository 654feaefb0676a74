"""A report section belongs to the suites that ran: a fresh run scored by this aligneval has every
curve its sections ask for (none on the dev split, where no curve is stored), and a run without the
calibration and uncertainty suites gets no Reliability or Risk-coverage section."""

from __future__ import annotations

import pytest

from aligneval.report import build_report
from tests.scripts import load_script


def _bench():
    return load_script("benchmarks/report_speed.py", "report_speed_for_sections")


@pytest.mark.parametrize("suites", [("accuracy", "calibration", "uncertainty", "ood"), ("accuracy", "ood")])
def test_curve_sections_follow_the_suites(tmp_path, suites):
    bench = _bench()
    run = tmp_path / "run"
    models, splits, examples = bench.synthetic_run(run, 1500)  # test, dev and ood splits
    bench.score(run, models, splits, examples, suites)
    paths = build_report(run, tmp_path / "out", resamples=20)
    html, md = paths.html.read_text(), paths.markdown.read_text()
    assert "No curve stored" not in html and "No curve stored" not in md
    for section, suite in (("reliability", "calibration"), ("risk_coverage", "uncertainty")):
        assert (f'id="{section}"' in html) == (suite in suites), section
