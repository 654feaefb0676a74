"""compare(): records in, comparison records out; pairing refused on mismatched data; seeds; Holm; CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from aligneval.compare import resampling, stats
from aligneval.metrics import base_metric_name, get_metric, scale_probs
from aligneval.cli import main
from aligneval.compare import compare, load
from aligneval.errors import DataError
from tests.fixtures_results import make_run, write_predictions

FIELDS = {"metric", "split", "suite", "baseline", "candidate", "delta", "ci_low", "ci_high", "p_value", "verdict",
          "n", "higher_is_better", "method"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("cmp") / "run", n=250)


@pytest.fixture(scope="module")
def comp(run):
    return compare(run, resamples=200, max_resamples=200)  # no adaptive refinement: exactly 200 resamples


def _preds(run, model, split):
    t = pq.read_table(run / "predictions" / model / f"{split}.parquet").to_pydict()
    return t["id"], np.array(t["label"]), np.array(t["probs"]), t["text"]


def test_every_shared_record_is_compared_with_its_stored_values(run, comp):
    res = load(run)
    base = {(r.suite, r.split, r.metric): r.value for r in res.records if r.model == "baseline"}
    cand = {(r.suite, r.split, r.metric): r.value for r in res.records if r.model == "aligned"}
    assert len(comp.records) == len(cand) and comp.warnings == []
    for row in comp.records:
        assert FIELDS <= set(row)
        k = (row["suite"], row["split"], row["metric"])
        assert row["baseline"] == base[k] and row["candidate"] == cand[k]
        assert row["delta"] == pytest.approx(cand[k] - base[k])
        if row["basis"] == "predictions":
            assert row["ci_low"] <= row["ci_high"] and 0 < row["p_value"] <= 1 and row["n"] == 250


def test_interval_equals_a_plain_bootstrap_of_the_metric(run, comp):
    """Reference: call the metric on each resample's rows (same resamples), temperature applied by hand."""
    for metric, split in (("ece@15", "ood_amazon"), ("ts:nll", "test"), ("aurc", "test")):
        row = comp.find(metric, split)
        res = load(run)
        ta = next(r.temperature for r in res.records if r.model == "baseline" and r.metric == metric and r.split == split)
        tb = next(r.temperature for r in res.records if r.model == "aligned" and r.metric == metric and r.split == split)
        _, labels, pa, _ = _preds(run, "baseline", split)
        _, _, pb, _ = _preds(run, "aligned", split)
        pa, pb = scale_probs(pa, ta), scale_probs(pb, tb)
        fn = get_metric(base_metric_name(metric)).fn
        deltas = []
        for w in resampling.count_chunks(len(labels), 200, resampling.split_rng(0, split)):
            for wr in w:
                idx = np.repeat(np.arange(len(labels)), wr)
                deltas.append(fn(pb[idx], labels[idx]) - fn(pa[idx], labels[idx]))
        lo, hi = np.quantile(deltas, [0.025, 0.975])
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_accuracy_p_value_is_exact_mcnemar_on_the_stored_predictions(run, comp):
    from statsmodels.stats.contingency_tables import mcnemar

    for split in ("test", "ood_amazon"):
        _, labels, pa, _ = _preds(run, "baseline", split)
        _, _, pb, _ = _preds(run, "aligned", split)
        ra, rb = pa.argmax(1) == labels, pb.argmax(1) == labels
        table = [[np.sum(ra & rb), np.sum(ra & ~rb)], [np.sum(~ra & rb), np.sum(~ra & ~rb)]]
        row = comp.find("accuracy", split, "accuracy")
        assert row["p_value_raw"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
        assert not row["p_floor"]  # exact: no resampling floor
        assert (row["extra"]["mcnemar_b"], row["extra"]["mcnemar_c"]) == (table[0][1], table[1][0])


def test_verdicts_follow_the_metric_direction(comp):
    for row in comp.records:
        if row["verdict"] in ("better", "worse"):
            improved = (row["delta"] > 0) == row["higher_is_better"]
            assert row["verdict"] == ("better" if improved else "worse")
            assert row["p_value"] < 0.05


def test_a_clear_improvement_is_found(tmp_path):
    run = make_run(tmp_path / "clear", n=600, models={"baseline": (0.6, 1.0), "aligned": (2.5, 1.0)}, attacks=False)
    row = compare(run, resamples=300).find("accuracy", "test", "accuracy")
    assert row["verdict"] == "better" and row["ci_low"] > 0


def test_order_of_prediction_rows_does_not_matter(tmp_path):
    run = make_run(tmp_path / "r", n=120, attacks=False)
    before = compare(run, resamples=100)
    ids, labels, probs, texts = _preds(run, "aligned", "test")
    perm = np.random.default_rng(0).permutation(len(ids))
    write_predictions(run / "predictions" / "aligned" / "test.parquet", [ids[i] for i in perm], labels[perm],
                      probs[perm], [texts[i] for i in perm])
    after = compare(run, resamples=100)
    assert before.records == after.records


def test_mismatched_example_ids_are_refused_naming_the_split(tmp_path, capsys):
    run = make_run(tmp_path / "r", n=60, attacks=False)
    ids, labels, probs, texts = _preds(run, "aligned", "ood_amazon")
    ids[0] = "someone-else"
    write_predictions(run / "predictions" / "aligned" / "ood_amazon.parquet", ids, labels, probs, texts)
    with pytest.raises(DataError, match=r"split 'ood_amazon'.*ids differ.*1 ids only in baseline"):
        compare(run, resamples=10)
    assert main(["compare", str(run), "--resamples", "10"]) == 4
    assert "ood_amazon" in capsys.readouterr().err


def test_against_an_older_run_pairs_by_ids_and_checks_fingerprints(tmp_path):
    old = make_run(tmp_path / "old", n=80, seed=0, attacks=False)
    new = make_run(tmp_path / "new", n=80, seed=0, attacks=False,
                   models={"baseline": (1.6, 1.8), "aligned": (2.2, 1.0)})
    comp = compare(new, against=old, resamples=50)
    assert comp.candidate == "aligned" and comp.baseline == "baseline"
    old_base = {(r.split, r.metric): r.value for r in load(old).records if r.model == "baseline"}
    row = comp.find("accuracy", "test", "accuracy")
    assert row["baseline"] == old_base[("test", "accuracy")]
    # a run on other data: refused, naming the split and the fingerprints
    other = make_run(tmp_path / "other", n=80, seed=1, attacks=False)
    with pytest.raises(DataError, match="fingerprints differ"):
        compare(new, against=other, resamples=10)


def test_seeds_are_aggregated_with_seed_and_test_set_variance_combined(tmp_path):
    """Reference by hand: per-seed deltas (statsmodels' t standard error) plus the variance of the
    seed-averaged delta over the same example resamples, the metric called on each resample's rows."""
    from scipy import stats as st
    from statsmodels.stats.weightstats import DescrStatsW

    run = make_run(tmp_path / "s", n=80, seeds=[13, 42, 7], attacks=False)
    comp = compare(run, resamples=150)
    assert comp.settings["seeds"] == 3
    row = comp.find("brier", "test")
    res = load(run)
    val = {r.model: r.value for r in res.records if r.metric == "brier" and r.split == "test"}
    seeds = ("13", "42", "7")
    assert row["seeds"]["baseline"] == {s: val[f"baseline@{s}"] for s in seeds}
    d = np.array([val[f"aligned@{s}"] - val[f"baseline@{s}"] for s in seeds])
    assert row["delta"] == pytest.approx(d.mean())
    assert row["seeds"]["baseline_mean"] == pytest.approx(np.mean([val[f"baseline@{s}"] for s in seeds]))
    fn = get_metric("brier").fn
    preds = {f"{m}@{s}": _preds(run, f"{m}@{s}", "test") for m in ("baseline", "aligned") for s in seeds}
    labels = preds["baseline@13"][1]
    reps = []
    for w in resampling.count_chunks(len(labels), 150, resampling.split_rng(0, "test")):
        for wr in w:
            idx = np.repeat(np.arange(len(labels)), wr)
            reps.append(np.mean([fn(preds[f"aligned@{s}"][2][idx], labels[idx]) - fn(preds[f"baseline@{s}"][2][idx], labels[idx])
                                 for s in seeds]))
    se_seed = DescrStatsW(d).std_mean
    se_ex = np.std(reps, ddof=1)
    se = np.hypot(se_seed, se_ex)
    df = se ** 4 / (se_seed ** 4 / (len(d) - 1))
    half = st.t.ppf(0.975, df) * se
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(d.mean() - half, rel=1e-9), pytest.approx(d.mean() + half, rel=1e-9))
    assert row["p_value_raw"] == pytest.approx(2 * st.t.sf(abs(d.mean()) / se, df), rel=1e-9)
    assert row["basis"] == "seeds" and "example bootstrap" in row["method"] and "note" not in row


def test_one_seed_is_labelled(run, comp):
    assert comp.settings["seeds"] == 1
    for r in comp.records:
        assert r.get("note") == ("single seed: the interval covers test-set sampling only" if r["ci_low"] is not None else None)


def test_holm_adjusts_the_whole_family(run):
    from statsmodels.stats.multitest import multipletests

    for kwargs in ({"holm": True}, {}):  # the old spelling and the default
        comp = compare(run, resamples=100, max_resamples=100, **kwargs)
        rows = {(r["split"], r["metric"]): r for r in comp.records if r["family"] is not None}
        assert {r["family"] for r in rows.values()} == {"exploratory"} and len(rows) > 20
        ref = multipletests([r["p_value_raw"] for r in rows.values()], method="holm")[1]
        np.testing.assert_allclose([r["p_value"] for r in rows.values()], ref, rtol=1e-12)
        assert all(r["adjust"] == "holm" for r in rows.values())
        # a metric two suites record on one split is one test: both rows carry the same adjusted p
        for r in comp.records:
            if r["family"] is not None:
                assert r["p_value"] == rows[(r["split"], r["metric"])]["p_value"]
            else:
                assert r["p_value"] == r["p_value_raw"] and r["adjust"] is None


def test_attack_records_are_paired_over_the_attack_logs(run, comp):
    from statsmodels.stats.contingency_tables import mcnemar

    row = comp.find("pruthi:accuracy_under_attack", "test")
    logs = {m: {json.loads(l)["id"]: json.loads(l) for l in (run / "attacks" / m / "pruthi.jsonl").read_text().splitlines()
                if json.loads(l)["kind"] == "result"} for m in ("baseline", "aligned")}
    ids = sorted(logs["baseline"])
    a = np.array([logs["baseline"][i]["outcome"] == "failed" for i in ids])
    b = np.array([logs["aligned"][i]["outcome"] == "failed" for i in ids])
    assert row["n"] == len(ids) and row["delta"] == pytest.approx(b.mean() - a.mean())
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert row["p_value_raw"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert row["ci_low"] <= row["delta"] <= row["ci_high"]
    # 20 attacked examples: below the default minimum of 30, so no verdict and no family
    assert row["verdict"] == "insufficient" and row["family"] is None
    assert row["verdict_reason"] == "n=20 < minimum 30 attacked examples"
    # the success rate has no per-example pairing here: a point value, no verdict
    rate = comp.find("pruthi:attack_success_rate", "test")
    assert rate["ci_low"] is None and rate["verdict"] == "n/a"


def test_comparison_json_is_the_results_document_plus_comparison(run, comp, tmp_path):
    path = comp.write(tmp_path / "comparison.json")
    doc = json.loads(path.read_text())
    original = json.loads((run / "results.json").read_text())
    for key in ("schema_version", "records", "curves", "models", "data", "environment"):
        assert doc[key] == original[key]
    c = doc["comparison"]
    assert c["baseline"] == "baseline" and c["candidate"] == "aligned" and c["settings"]["resamples"] == 200
    assert len(c["records"]) == len(comp.records)
    for r in c["records"]:
        for k in ("delta", "ci_low", "ci_high", "p_value"):
            assert r[k] is None or math.isfinite(r[k])


def test_cli_compare_prints_the_headline_and_writes_json(run, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["compare", str(run), "--resamples", "50", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "aligned vs baseline" in text
    assert json.loads(out.read_text())["comparison"]["records"]


def test_cli_usage_errors(run, tmp_path, capsys):
    assert main(["compare", str(run), "--candidate", "nobody"]) == 2
    assert "no model 'nobody'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 3
    assert main(["compare", str(run), "--resamples", "0"]) == 2
