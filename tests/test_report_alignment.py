"""The report's Alignment section, the λ dose–response with several twins, and the statistics fields
of the comparison, all drawn from results.json and comparison records (never from prediction files)."""

from __future__ import annotations

import copy
import json
import re
import shutil

import numpy as np
import pytest

from aligneval.compare import compare, load
from aligneval.errors import UsageError
from aligneval.formatting import fmt, fmt_ci, fmt_delta, fmt_p, plain, round_up, sig_digits
from aligneval.report import alignment as A
from aligneval.report import build_report
from aligneval.report import displays as D
from aligneval.report.build import build_context
from aligneval.report.context import SINGLE_SEED
from aligneval.report.overview import dose_display
from aligneval.report.html import render_html
from aligneval.report.markdown import render_markdown
from tests.fixtures_alignment import add_alignment, lam_name, make_dose_run
from tests.fixtures_results import make_run

LAYERS, HEADS = 3, 4


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    run = make_run(root / "run", n=120, attacks=False)
    add_alignment(run, {"baseline": 1.0, "aligned": 0.6}, n_layers=LAYERS, n_heads=HEADS)
    comp = compare(run, "baseline", "aligned", resamples=100)
    paths = build_report(run, root / "out", comparison=comp)
    return run, comp, paths


def _parquet_mean(run, model: str, column: str) -> float:
    import pyarrow.parquet as pq

    return float(np.mean(pq.read_table(run / "alignment" / model / "test.parquet", columns=[column])
                         .column(column).to_numpy()))


def test_headline_sentence_gives_the_gap_ratio_and_its_interval(single):
    run, comp, paths = single
    base, twin = _parquet_mean(run, "baseline", "kq_mmd2"), _parquet_mean(run, "aligned", "kq_mmd2")
    row = comp.find("kq_mmd2", "test")
    assert row["baseline"] == pytest.approx(base) and row["candidate"] == pytest.approx(twin)
    assert row["ci_low"] < row["ci_high"] < 0  # the twin's gap really shrank in the fixture
    digits = sig_digits([base, twin])
    want = (f"Alignment: the twin's K–Q MMD² is {twin / base:.2f}× the baseline's ({fmt(twin, digits)} vs "
            f"{fmt(base, digits)}; Δ {fmt_delta(twin - base, digits)}, 95% CI "
            f"[{fmt_delta(row['ci_low'], digits)}, {fmt_delta(row['ci_high'], digits)}])")
    html, md = paths.html.read_text(), paths.markdown.read_text()
    assert want.replace("'", "&#39;") in html
    assert want.replace("[", "\\[").replace("]", "\\]") in md
    assert "measurably closer to its queries" in html


def test_headline_keeps_only_the_overall_gap_and_probe(single):
    _, comp, paths = single
    ctx = build_context(comp, plots=False)
    metrics = [r["metric"] for r in ctx["headline"]]
    assert "kq_mmd2" in metrics and "kq_probe_acc" in metrics
    assert "attn_entropy" not in metrics and not any("@L" in m for m in metrics)
    for rows in ctx["by_split"].values():  # all-comparisons tables: no per-layer or per-head rows either
        assert not any("@L" in r["metric"] for r in rows)
    detail = [r for r in comp.records if "@L" in r["metric"]]
    assert len(detail) == 3 * (LAYERS + LAYERS * HEADS)
    forest = D.ForestDisplay.from_results(comp.records)  # no direction: never on the forest plot
    assert not any(r["label"].startswith(("kq_", "attn_")) for r in forest.rows)
    md = paths.markdown.read_text()
    assert f"{len(detail)} per-layer and per-head alignment rows are in the Alignment section" in md


def test_alignment_table_traces_to_the_per_layer_comparison_records(single):
    _, comp, paths = single
    md = paths.markdown.read_text()
    block = md.split("## Alignment", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    header, body = rows[0], rows[1:]
    assert header[:4] == ["diagnostic", "layer", "baseline", "aligned"]
    assert len(body) == 3 * (LAYERS + 1)  # overall + one row per layer, per diagnostic
    names = {v: k for k, v in A.FAMILIES.items()}
    for cells in body:
        family, layer = names[cells[0]], cells[1]
        r = comp.find(family if layer == "all" else f"{family}@L{layer}", "test")
        assert cells[2:5] == [fmt(r["baseline"]), fmt(r["candidate"]),
                              f"{fmt_delta(r['delta'])} {fmt_ci(r['ci_low'], r['ci_high'])}".replace("[", "\\[")
                              .replace("]", "\\]")]
    assert re.findall(r"!\[[^\]]*\]\(plots/(alignment_[^)]+)\.png\)", block) == [
        "alignment_kq_mmd2_heads", "alignment_kq_probe_acc_heads", "alignment_kq_mmd2_layers",
        "alignment_kq_probe_acc_layers", "alignment_attn_entropy_layers"]
    html = paths.html.read_text()
    section = html.split('<section id="alignment">', 1)[1].split("</section>", 1)[0]
    assert section.count('<img src="data:image/png;base64,') == 5


def test_heatmap_holds_the_records_and_the_comparison_deltas(single):
    run, comp, _ = single
    res = load(run)
    disp = D.AlignmentHeatmapDisplay.from_comparison(comp.records, "test", "kq_mmd2", (LAYERS, HEADS))
    for layer in range(LAYERS):
        for head in range(HEADS):
            metric = f"kq_mmd2@L{layer}H{head}"
            base, twin = res.value(metric, "test", "baseline"), res.value(metric, "test", "aligned")
            assert disp.baseline[layer, head] == base and disp.candidate[layer, head] == twin
            assert disp.baseline[layer, head] == pytest.approx(_parquet_mean(run, "baseline", metric))
            row = comp.find(metric, "test")
            assert disp.delta[layer, head] == row["delta"] == pytest.approx(twin - base)
            assert disp.significant[layer, head] == (row["ci_low"] > 0 or row["ci_high"] < 0)
    disp.plot()
    base_img, twin_img, delta_img = (ax.images[0] for ax in disp.axes_)
    np.testing.assert_array_equal(np.ma.getdata(delta_img.get_array()), disp.delta)
    np.testing.assert_array_equal(np.ma.getdata(twin_img.get_array()), disp.candidate)
    assert delta_img.norm.vmin == -delta_img.norm.vmax == -np.abs(disp.delta).max()  # centred on 0
    assert delta_img.get_cmap().name.startswith("RdBu_r")
    assert base_img.norm.vmin == twin_img.norm.vmin and base_img.norm.vmax == twin_img.norm.vmax  # one scale
    assert D.figure_png(disp)[:4] == b"\x89PNG"


def test_per_layer_display_draws_values_and_interval_of_each_layer(single):
    _, comp, _ = single
    disp = D.AlignmentLayersDisplay.from_comparisons([("aligned", comp.records)], "test", "kq_probe_acc", LAYERS)
    for layer in range(LAYERS):
        row = comp.find(f"kq_probe_acc@L{layer}", "test")
        assert disp.values["baseline"][layer] == row["baseline"] and disp.values["aligned"][layer] == row["candidate"]
        assert (disp.deltas["aligned"][layer], disp.ci_low["aligned"][layer], disp.ci_high["aligned"][layer]) == (
            row["delta"], row["ci_low"], row["ci_high"])
    disp.plot()
    assert [line.get_label() for line in disp.ax_.get_lines()] == ["baseline", "aligned"]
    segments = disp.ax_delta_.collections[0].get_segments()  # one CI segment per layer
    np.testing.assert_allclose([s[:, 1] for s in segments], np.c_[disp.ci_low["aligned"], disp.ci_high["aligned"]])


def test_a_run_without_alignment_records_says_the_report_cannot_tell(tmp_path):
    run = make_run(tmp_path / "plain", n=60, splits={"test": "test"}, attacks=False)
    paths = build_report(run, tmp_path / "out", resamples=20)
    html, md = paths.html.read_text(), paths.markdown.read_text()
    assert "cannot tell &#34;alignment does not help&#34; from &#34;alignment never happened&#34;" in html
    assert 'cannot tell "alignment does not help" from "alignment never happened"' in md
    assert 'id="alignment"' not in html
    add_alignment(run, {"baseline": 1.0}, n=30)  # diagnostics for one side only
    ctx = build_context(compare(run, resamples=20), plots=False)
    assert ctx["alignment_lines"] == ["Alignment: only baseline has alignment diagnostics, so the K–Q gap of the "
                                      "pair cannot be compared; run the alignment suite on both models."]


# ----------------------------------------------------------------------------------------------
# several twins: one per λ


@pytest.fixture(scope="module")
def dose_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dose")
    run = make_dose_run(root / "run", lambdas=(1.0, 0.01, 0.1), n=100, attacks=False)
    paths = build_report(run, root / "out", resamples=50)  # no --candidate: every twin is compared
    return run, paths


def test_every_twin_is_compared_and_kept_in_comparison_json(dose_run):
    run, paths = dose_run
    doc = json.loads(paths.comparison.read_text())
    cards = json.loads((run / "results.json").read_text())["models"]
    twins = [c["candidate"] for c in doc["comparisons"]]
    assert twins == [lam_name(x) for x in (0.01, 0.1, 1.0)]  # in λ order
    assert [c["lambda"] for c in doc["comparisons"]] == [cards[t]["card"]["lambda"] for t in twins]
    assert doc["comparison"]["candidate"] == twins[0]
    md = paths.markdown.read_text()
    for t in twins:
        lam = format(cards[t]["card"]["lambda"], "g")
        assert f"### {t} (λ = {lam})" in md
        assert f"Alignment ({t}): the twin's K–Q MMD² is" in md
    html = paths.html.read_text()
    assert '<section id="dose">' in html and html.count('id="headline-aligned-lam') == 3


def test_dose_response_plots_the_comparison_deltas_against_the_cards_lambda(dose_run):
    run, paths = dose_run
    doc = json.loads(paths.comparison.read_text())
    cards = json.loads((run / "results.json").read_text())["models"]
    comps = [compare(run, "baseline", c["candidate"], resamples=50) for c in doc["comparisons"]]
    ctx = build_context(comps, plots=False)
    disp = dose_display(ctx["twins"], ctx["primary"])
    np.testing.assert_array_equal(disp.lambdas, [cards[c.candidate]["card"]["lambda"] for c in comps])
    disp.plot()
    stored = {c["candidate"]: {(r["split"], r["metric"]): r for r in c["records"]} for c in doc["comparisons"]}
    metrics = [p["metric"] for p in disp.panels]
    assert "accuracy" in metrics and metrics[-1] == "kq_mmd2" and not any("@L" in m for m in metrics)
    for panel, line in zip(disp.panels, disp.lines_):
        want = [stored[t][(panel["split"], panel["metric"])]["delta"] for t in disp.twins]
        np.testing.assert_array_equal(line.get_xdata(), disp.lambdas)
        np.testing.assert_allclose(line.get_ydata(), want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(panel["ci_low"], [stored[t][(panel["split"], panel["metric"])]["ci_low"]
                                                     for t in disp.twins])
    gap = disp.panels[-1]
    np.testing.assert_allclose(gap["ratio"], [stored[t][("test", "kq_mmd2")]["candidate"]
                                              / stored[t][("test", "kq_mmd2")]["baseline"] for t in disp.twins])
    assert all(ax.get_xscale() == "log" for ax in disp.axes_[: len(disp.panels)])
    assert (paths.out / "plots" / "dose_response.png").is_file()


def test_twins_are_found_by_card_or_name_and_build_report_takes_a_dict(tmp_path, dose_run):
    from aligneval.compare.models import find_twins, twin_lambda

    run = make_dose_run(tmp_path / "names", lambdas=(1.0, 0.01, 0.1), n=40, attacks=False, alignment=False,
                        names_only=True, splits={"test": "test"})
    res = load(run)
    assert find_twins(res) == [lam_name(x) for x in (0.01, 0.1, 1.0)]
    assert [twin_lambda(res, t, [t]) for t in find_twins(res)] == [0.01, 0.1, 1.0]
    comps = {t: compare(run, "baseline", t, resamples=20) for t in find_twins(res)}
    paths = build_report(run, tmp_path / "out", comparison=comps, formats=("md",))
    md = paths.markdown.read_text()
    assert "## Dose–response: Δ against λ" in md and "| metric | split | λ = 0.01 | λ = 0.1 | λ = 1 |" in md
    one = build_report(run, tmp_path / "one", candidate="aligned-lam0.1", resamples=20, formats=("md",))
    assert json.loads(one.comparison.read_text())["comparison"]["candidate"] == "aligned-lam0.1"
    assert "comparisons" not in json.loads(one.comparison.read_text())


@pytest.mark.slow
def test_dose_response_over_seeds(tmp_path):
    run = make_dose_run(tmp_path / "seeds", lambdas=(0.1, 1.0), seeds=[13, 42], n=60, attacks=False,
                        splits={"test": "test"})
    paths = build_report(run, tmp_path / "out", resamples=20)
    doc = json.loads(paths.comparison.read_text())
    assert [c["candidate"] for c in doc["comparisons"]] == [lam_name(0.1), lam_name(1.0)]
    assert [c["lambda"] for c in doc["comparisons"]] == [0.1, 1.0]
    assert all(r["basis"] == "seeds" for c in doc["comparisons"] for r in c["records"])
    assert (paths.out / "plots" / "dose_response.png").is_file()
    assert SINGLE_SEED not in paths.markdown.read_text()


# ----------------------------------------------------------------------------------------------
# the report reads results.json only


def test_the_report_reads_no_prediction_file(single, tmp_path, monkeypatch):
    from aligneval.results import Results

    run, comp, _ = single
    copy_run = tmp_path / "run"
    shutil.copytree(run, copy_run)
    shutil.rmtree(copy_run / "predictions")
    res = load(copy_run)

    def refuse(*a, **k):
        raise AssertionError("the report read a prediction file")

    monkeypatch.setattr(Results, "predictions", refuse)
    stored = copy.copy(comp)
    stored.results = stored.baseline_results = res
    paths = build_report(copy_run, tmp_path / "out", comparison=stored)
    html = paths.html.read_text()
    for section in ("reliability", "risk_coverage", "disagreements", "alignment"):
        assert f'id="{section}"' in html


def test_a_missing_curve_is_said_not_recomputed(single, tmp_path, monkeypatch):
    from aligneval.results import Results

    run, comp, _ = single
    doc = json.loads((run / "results.json").read_text())
    doc["curves"] = [c for c in doc["curves"] if not (c["name"] == "reliability" and c["model"] == "aligned"
                                                       and c["split"] == "test")]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(doc))
    res = load(tmp_path / "run")
    monkeypatch.setattr(Results, "predictions", lambda *a, **k: pytest.fail("a prediction file was read"))
    disp = D.ReliabilityDisplay.from_results(res, "test", ["baseline", "aligned"])
    assert list(disp.bins) == ["baseline"] and disp.missing == ["aligned"]
    assert any("no curve stored: aligned" in t.get_text() for t in disp.plot().ax_.texts)
    stored = copy.copy(comp)
    stored.results = stored.baseline_results = res
    md = render_markdown(build_context(stored))
    assert "No curve stored for aligned on test" in md
    assert "Accuracy against confidence in 15 equal-width bins" in md  # the stored curves' own bin count


def test_disagreement_table_equals_a_hand_count():
    from aligneval.records import Curve
    from aligneval.report.examples import stored_disagreements
    from aligneval.suites.accuracy import disagreement_table
    from aligneval.suites.base import Predictions

    rng = np.random.default_rng(3)
    n = 200
    labels = rng.integers(0, 3, n)
    pa, pb = rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(3), n)
    ids = [f"x{i}" for i in range(n)]
    perm = rng.permutation(n)  # the second model's rows in another order
    a = Predictions(ids, labels, pa, [f"text {i}" for i in range(n)])
    b = Predictions([ids[i] for i in perm], labels[perm], pb[perm], None)
    table = disagreement_table(a, b, limit=7)
    differ = [i for i in range(n) if max(range(3), key=lambda k: pa[i][k]) != max(range(3), key=lambda k: pb[i][k])]
    assert table["n"] == n and table["count"] == len(differ)
    assert table["model_only_right"] == sum(pa[i].argmax() == labels[i] != pb[i].argmax() for i in range(n))
    assert table["versus_only_right"] == sum(pb[i].argmax() == labels[i] != pa[i].argmax() for i in range(n))
    top = sorted(differ, key=lambda i: -max(pa[i].max(), pb[i].max()))[:7]
    assert [r["id"] for r in table["rows"]] == [ids[i] for i in top]
    assert [(r["pred"], r["pred_versus"], r["label"]) for r in table["rows"]] == [
        (int(pa[i].argmax()), int(pb[i].argmax()), int(labels[i])) for i in top]
    assert table["rows"][0]["text"] == f"text {top[0]}"

    class Run:  # the report reads the pair in either order
        curves = [Curve("accuracy", "t", "a", "disagreements", {"versus": "b", **table})]

    flipped = stored_disagreements(Run, "b", "a", "t")
    assert flipped["model_only_right"] == table["versus_only_right"]
    assert [r["pred"] for r in flipped["rows"]] == [r["pred_versus"] for r in table["rows"]]


# ----------------------------------------------------------------------------------------------
# statistics fields of the comparison


def _with(comp, records, settings=None):
    out = copy.copy(comp)
    out.records = records
    out.settings = dict(comp.settings, **(settings or {}))
    return out


def test_raw_and_adjusted_p_floors_reasons_and_families_are_rendered(single):
    _, comp, _ = single
    records = [r.to_dict() for r in comp.records]  # typed rows are frozen: edit their dict form
    acc = next(r for r in records if r["metric"] == "accuracy" and r["split"] == "test")
    nll = next(r for r in records if r["metric"] == "nll" and r["split"] == "test")
    brier = next(r for r in records if r["metric"] == "brier" and r["split"] == "test")
    for r in records:
        if r.get("higher_is_better") is not None:
            r.update(family="exploratory", adjust="bh", p_value_raw=r.get("p_value_raw", r["p_value"]))
    acc.update(family="primary", p_floor=True, p_value_raw=2 / 1001, p_value=0.012)
    nll.update(verdict="insufficient", verdict_reason="n=12 < minimum 30 examples: no verdict")
    ctx = build_context(_with(comp, records, {"adjust": "bh", "seeds": 1}), plots=False)
    md, html = render_markdown(ctx), render_html(ctx)
    row = next(line for line in md.splitlines() if line.startswith("| Accuracy ↑"))
    assert "| < 0.002 | ≤ 0.012 |" in row.replace("&lt;", "<") and "exploratory" not in row
    assert "| p raw | p BH |" in md
    assert "NLL ↓ (exploratory)" in md and "– no verdict (n=12 &lt; minimum 30 examples: no verdict)" in md
    assert f"Brier score ↓ (exploratory) | {fmt(brier['baseline'])}" in md
    assert "<span class=\"reason\">n=12 &lt; minimum 30 examples: no verdict</span>" in html
    assert '<span class="tag">exploratory</span>' in html and "&lt; 0.002" in html
    assert SINGLE_SEED in md and SINGLE_SEED in html
    assert "Benjamini–Hochberg" in html


def test_an_old_comparison_without_the_new_fields_still_renders(single):
    _, comp, _ = single
    records = [r.to_dict() for r in comp.records]  # typed rows are frozen: edit their dict form
    for r in records:
        for key in ("p_value_raw", "adjust", "family", "p_floor", "verdict_reason", "min_n_ok", "note"):
            r.pop(key, None)
    old = _with(comp, records)
    old.settings = {k: v for k, v in comp.settings.items() if k in ("resamples", "seed", "confidence", "alpha")}
    ctx = build_context(old, plots=False)
    md = render_markdown(ctx)
    assert "| p | verdict |" in md and "p raw" not in md
    acc = next(r for r in records if r["metric"] == "accuracy" and r["split"] == "test")
    assert f"| {fmt_p(acc['p_value'])} |" in md.replace("&lt;", "<")
    assert "none (each p-value on its own)" in render_html(ctx)


def test_a_tiny_split_shows_why_it_has_no_verdict(tmp_path):
    run = make_run(tmp_path / "tiny", n=12, splits={"test": "test"}, attacks=False)
    comp = compare(run, resamples=20)
    reasons = {r["verdict_reason"] for r in comp.records if r.get("verdict_reason")}
    assert reasons, "the comparison gives a reason for rows below the minimum size"
    md = render_markdown(build_context(comp, plots=False))
    for reason in reasons:
        assert reason.replace("<", "&lt;") in md


def test_formatting_prints_bounds_not_floors():
    assert fmt_p(2 / 1001, floor=True) == "< 0.002" and fmt_p(1 / 1001, floor=True) == "< 0.001"
    assert fmt_p(2 / 20001, floor=True) == "< 0.0001" and fmt_p(0.0123, bound=True) == "≤ 0.012"
    assert fmt_p(0.0004) == "< 0.001" and fmt_p(None) == "–"
    assert round_up(0.00149) == 0.002 and round_up(0.0951) == 0.1 and plain(round_up(0.3)) == "0.3"
    assert sig_digits([0.05, 0.031]) == 3 and sig_digits([12.5]) == 0 and sig_digits([]) == 2


def test_an_output_onto_a_file_is_refused_before_any_work(single, tmp_path, monkeypatch):
    import aligneval.compare as C

    run, _, _ = single
    monkeypatch.setattr(C, "compare", lambda *a, **k: pytest.fail("compared before checking --out"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(UsageError, match="file"):
            build_report(run, out)
    (tmp_path / "o" / "report.html").mkdir(parents=True)
    with pytest.raises(UsageError, match="folder"):
        build_report(run, tmp_path / "o")
