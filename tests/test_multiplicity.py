"""Multiplicity, minimum sizes and p-value resolution, against statsmodels and simulations.

* Holm and Benjamini-Hochberg equal statsmodels' `multipletests` on random p-vectors.
* Declared primary metrics form their own family; the rest is adjusted as the exploratory family.
* A 1-example and a 5-example split give no verdict, in the comparison and in the gate.
* A null simulation: two exchangeable models, 200 replications x 40 metrics; the default adjustment
  keeps the family-wise false-positive rate at 5% or below, no adjustment does not.
* Adaptive resampling resolves p-values below the 2/(R+1) floor when the effect is large.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from aligneval.compare import multiplicity, resampling
from aligneval.cli import main
from aligneval.compare import compare, declared_primary, load
from aligneval.records import Record
from aligneval.suites.base import Predictions
from tests.fixtures_results import make_run


# ----------------------------------------------------------------------------------------------
# the adjustments themselves


@pytest.mark.parametrize("method,ref", [("holm", "holm"), ("bh", "fdr_bh")])
@pytest.mark.parametrize("m", [1, 2, 7, 40, 113])
def test_adjustment_equals_statsmodels_multipletests(method, ref, m, monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    # statsmodels' holm branch calls gc.collect() on every call (seconds in a big test process); it only
    # frees memory, so it is skipped here
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(m)
    for trial in range(20):
        # a mix of tiny, moderate, tied and null p-values, as comparisons produce
        p = np.concatenate([rng.uniform(0, 1, m // 2), rng.exponential(0.01, m - m // 2)]).clip(1e-12, 1)
        if trial % 3 == 0:
            p[: m // 3] = p[0]  # ties (e.g. several rows at the bootstrap floor)
        if trial % 4 == 1:
            p[-1] = 1.0
        rng.shuffle(p)
        want = multipletests(p, alpha=0.05, method=ref)[1]
        np.testing.assert_allclose(multiplicity.ADJUSTMENTS.get(method)(p), want, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(multiplicity.decisions(p, method, 0.05), multipletests(p, 0.05, ref)[0])


def test_adjust_skips_missing_values_and_unknown_methods_are_usage_errors():
    from statsmodels.stats.multitest import multipletests

    from aligneval.errors import UsageError

    got = multiplicity.adjust([0.01, None, 0.04, float("nan"), 0.03], "bh")
    want = multipletests([0.01, 0.04, 0.03], method="fdr_bh")[1]
    assert got[1] is None and got[3] is None
    np.testing.assert_allclose([got[0], got[2], got[4]], want, rtol=1e-12)
    assert multiplicity.adjust([0.2, 0.01], "none") == [0.2, 0.01]
    with pytest.raises(UsageError, match="did you mean 'holm'"):
        multiplicity.adjust([0.1], "hlm")


# ----------------------------------------------------------------------------------------------
# families


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("mult") / "run", n=300, attacks=False)


def test_primary_metrics_are_their_own_family(run):
    from statsmodels.stats.multitest import multipletests

    primary = ["test/accuracy", "ece@15", "test/brier"]
    comp = compare(run, resamples=200, max_resamples=200, primary=primary, adjust="bh")
    fam = {}
    for r in comp.records:
        want = "primary" if ((r["split"], r["metric"]) in {("test", "accuracy"), ("test", "brier")}
                             or r["metric"] == "ece@15") else "exploratory"
        assert r["family"] == (want if r["p_value_raw"] is not None and r["higher_is_better"] is not None else None)
        if r["family"]:
            fam.setdefault(r["family"], {})[(r["split"], r["metric"])] = r
    assert len(fam["primary"]) == 2 + 3  # ece@15 on dev, test and ood_amazon
    for rows in fam.values():
        ref = multipletests([r["p_value_raw"] for r in rows.values()], method="fdr_bh")[1]
        np.testing.assert_allclose([r["p_value"] for r in rows.values()], ref, rtol=1e-12)
        assert all(r["adjust"] == "bh" for r in rows.values())
    assert comp.settings["primary"] == primary and comp.settings["adjust"] == "bh"


def test_verdicts_use_the_adjusted_p(run):
    comp = compare(run, resamples=200, max_resamples=200, adjust="holm")
    raw = compare(run, resamples=200, max_resamples=200, adjust="none")
    for r in comp.records:
        if r["family"]:
            significant = r["p_value"] < 0.05 and r["delta"] != 0
            assert (r["verdict"] in ("better", "worse")) == significant
    # the raw p-values are the same; some raw "significant" rows do not survive Holm
    assert [r["p_value_raw"] for r in comp.records] == [r["p_value_raw"] for r in raw.records]
    assert sum(r["verdict"] in ("better", "worse") for r in raw.records) >= \
        sum(r["verdict"] in ("better", "worse") for r in comp.records)


def test_the_spec_declares_primary_and_the_run_carries_it(tmp_path):
    import hashlib
    import json

    from aligneval.errors import UsageError
    from aligneval.spec import parse_spec

    splits = {"dev": {"role": "dev", "path": "d.jsonl"}, "test": {"role": "test", "path": "t.jsonl"},
              "amazon": {"role": "ood", "path": "a.jsonl"}}
    spec = parse_spec({"splits": splits, "primary": ["accuracy", "test/ece@15", "ts:nll"]}, check_files=False)
    assert spec.primary == ("accuracy", "test/ece@15", "ts:nll")
    with pytest.raises(UsageError, match=r"primary: unknown metric 'acuracy' \(did you mean 'accuracy'\?\)"):
        parse_spec({"splits": splits, "primary": ["acuracy"]}, check_files=False)
    with pytest.raises(UsageError, match=r"no split 'tset' \(did you mean 'test'\?\)"):
        parse_spec({"splits": splits, "primary": ["tset/accuracy"]}, check_files=False)
    with pytest.raises(UsageError, match="primary"):
        parse_spec({"splits": splits, "primary": "accuracy"}, check_files=False)
    # a run records its spec's path and sha256: the declaration is read from the spec file while it is
    # the file the run used, and from results.json's spec section when the runner stored it there
    run = make_run(tmp_path / "r", n=40, attacks=False)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('name = "x"\nprimary = ["test/accuracy"]\n')
    doc = json.loads((run / "results.json").read_text())
    doc["spec"].update(path=str(spec_file), sha256=hashlib.sha256(spec_file.read_bytes()).hexdigest())
    (run / "results.json").write_text(json.dumps(doc))
    assert declared_primary(load(run)) == ["test/accuracy"]
    spec_file.write_text('name = "x"\nprimary = ["brier"]\n')  # edited since: not the run's spec
    assert declared_primary(load(run)) is None
    doc["spec"]["primary"] = ["nll"]
    (run / "results.json").write_text(json.dumps(doc))
    assert declared_primary(load(run)) == ["nll"]
    assert compare(run, resamples=50, max_resamples=50).settings["primary"] == ["nll"]


# ----------------------------------------------------------------------------------------------
# tiny samples


def test_one_and_five_example_splits_give_no_verdict(tmp_path, capsys):
    run = make_run(tmp_path / "tiny", n=200, sizes={"test": 1, "ood_amazon": 5}, attacks=False,
                   models={"baseline": (0.2, 1.0), "aligned": (3.0, 1.0)})
    comp = compare(run, resamples=200, max_resamples=400)
    for r in comp.records:
        if r["split"] in ("test", "ood_amazon") and r["higher_is_better"] is not None and r["delta"] is not None \
                and (r["p_value_raw"] is not None or r["ci_low"] is not None):
            assert r["verdict"] == "insufficient" and r["family"] is None
            assert r["verdict_reason"] == f"n={r['n']} < minimum 30 examples"
    assert any(r["split"] == "test" and r["verdict"] == "insufficient" for r in comp.records)
    assert any(r["split"] == "ood_amazon" and r["verdict"] == "insufficient" for r in comp.records)
    # the 200-example dev split still gets verdicts; the tiny splits are not in its family
    dev = [r for r in comp.records if r["split"] == "dev" and r["family"]]
    assert dev and any(r["verdict"] == "better" for r in dev)
    # the minimum is settable: --min-n 1 lets the 5-example split be tested (and it is not significant)
    low = compare(run, resamples=200, max_resamples=200, min_n=1)
    assert all(r["verdict"] != "insufficient" for r in low.records)
    # the gate says the same and does not pass a significance rule on it: exit 4, a JUnit <error>
    rules = tmp_path / "rules.toml"
    rules.write_text('"accuracy/accuracy [ood_amazon]" = "no significant drop at 0.05"\n'
                     '"accuracy/accuracy [dev]" = "candidate >= 0.0"\n')
    junit = tmp_path / "junit.xml"
    assert main(["gate", str(run), "--rules", str(rules), "--junit", str(junit), "--resamples", "200",
                 "--max-resamples", "400"]) == 4
    out = capsys.readouterr().out
    assert "NO VERDICT" in out and "n=5 < minimum 30" in out
    text = junit.read_text()
    assert 'errors="1"' in text and 'type="insufficient-data"' in text and 'failures="0"' in text
    assert main(["gate", str(run), "--rules", str(rules), "--min-n", "5", "--resamples", "200",
                 "--max-resamples", "400"]) == 0


# ----------------------------------------------------------------------------------------------
# p-value resolution


def test_adaptive_resampling_resolves_p_below_the_floor_when_the_effect_is_large(tmp_path):
    run = make_run(tmp_path / "clear", n=400, attacks=False, models={"baseline": (0.3, 1.0), "aligned": (3.0, 1.0)})
    comp = compare(run, resamples=500)
    m = len({(r["split"], r["metric"]) for r in comp.records if r["family"]})
    assert m * 2 / 501 > 0.05  # at the 2/(R+1) floor of 500 resamples Holm could reject nothing
    big = [r for r in comp.records if r["family"] and r["resamples"] > 500]
    assert big, "the floor rows must be refined"
    for r in big:
        assert r["p_value_raw"] < 2 / 1001 and r["p_floor"]
        assert r["p_value_raw"] == pytest.approx(2 / (r["resamples"] + 1))
        assert r["p_value"] < 0.05 and r["verdict"] in ("better", "worse") and r["p_settled"]
    # the refined rows are exactly the bootstrap rows: McNemar's exact p has no floor and stays at R
    assert all(r["resamples"] == 500 for r in comp.records if r["metric"] == "accuracy")
    # without adjustment the 2/501 floor already decides: no floor row is refined
    raw = compare(run, resamples=500, adjust="none")
    assert all(r["resamples"] <= 500 for r in raw.records if r["p_floor"])  # < 500: resamples where a metric is undefined
    # the extra resamples extend the first 1000: the interval is a percentile interval of all of them
    test_brier = comp.find("brier", "test")
    assert test_brier["ci_low"] <= test_brier["delta"] <= test_brier["ci_high"]


def test_near_threshold_p_is_refined_until_settled_or_capped(run):
    """Every bootstrap row in a family ends settled (no decision hangs on its Monte-Carlo error) or at the cap."""
    comp = compare(run, resamples=100, max_resamples=3200)
    for r in comp.records:
        if r["family"] and r["metric"] != "accuracy":
            assert r["p_settled"] or r["resamples"] == 3200
            assert r["p_mc_se"] == pytest.approx(np.sqrt(r["p_value_raw"] * (2 - r["p_value_raw"]) / r["resamples"]))


# ----------------------------------------------------------------------------------------------
# the null simulation


@dataclass
class MemoryRun:
    """An in-memory run (what `load_results` gives, minus the files): records and predictions."""

    records: list
    preds: dict
    doc: dict = field(default_factory=dict)
    models: dict = field(default_factory=lambda: {"baseline": {}, "aligned": {}})
    run_dir: None = None

    def predictions(self, model, split):
        return self.preds[(model, split)]


NULL_METRICS = ["accuracy", "macro_f1", "ece@15", "ece@10", "mce@15", "ace@15", "brier", "nll", "aurc", "auroc_error"]
NULL_SPLITS = ["s1", "s2", "s3", "s4"]


def exchangeable_run(rng, n: int) -> MemoryRun:
    """Two models that differ only by chance: per example, two noisy copies of one prediction, randomly
    swapped between the models. Every metric has the same distribution for both: the null holds."""
    from aligneval.metrics import get_metric

    records, preds, data = [], {}, {}
    for split in NULL_SPLITS:
        labels = rng.integers(0, 2, n)
        z = rng.normal(0, 1, (n, 2))
        z[np.arange(n), labels] += 1.2
        copies = [z + rng.normal(0, 0.8, (n, 2)) for _ in range(2)]
        swap = rng.random(n) < 0.5
        pair = (np.where(swap[:, None], copies[0], copies[1]), np.where(swap[:, None], copies[1], copies[0]))
        ids = [f"{split}-{i}" for i in range(n)]
        data[split] = {"role": "test", "fingerprint": split}
        for model, logits in zip(("baseline", "aligned"), pair):
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            preds[(model, split)] = Predictions(ids, labels, probs)
            for metric in NULL_METRICS:  # the value via the bootstrap's statistic (equal to the metric:
                m = get_metric(metric)     # tests/test_resampling.py), ten times faster than netcal
                value = resampling.observed(resampling.statistic(metric, probs, labels), n)
                records.append(Record("s", split, model, metric, value, n, m.higher_is_better, m.range, "predictions"))
    return MemoryRun(records, preds, {"data": data, "spec": {}})


@pytest.mark.slow
def test_null_simulation_family_wise_error():
    """200 replications x 40 metrics (10 metrics x 4 splits) of exchangeable models. Holm (the default)
    must call something better or worse in at most 5% of replications; the same raw p-values without
    adjustment (the control, `--adjust none`) clearly more often. Small n and few resamples keep it
    fast; the cap of the adaptive step is lowered to 1,600 for the same reason (its floor 2/1601 is below
    Holm's smallest threshold 0.05/40)."""
    rng = np.random.default_rng(20261125)
    hits = {"holm": 0, "none": 0}
    reps = 200
    for rep in range(reps):
        comp = compare(exchangeable_run(rng, n=120), resamples=200, max_resamples=1600, seed=rep)
        assert comp.settings["adjust"] == "holm"
        assert len({(r["split"], r["metric"]) for r in comp.records if r["family"]}) == 40
        hits["holm"] += any(r["verdict"] in ("better", "worse") for r in comp.records)
        raw = [r.to_dict() for r in comp.records]  # multiplicity works on the rows' working (dict) form
        multiplicity.apply(raw, method="none", alpha=0.05)
        hits["none"] += any(r["verdict"] in ("better", "worse") for r in raw)
    rate = {k: v / reps for k, v in hits.items()}
    assert rate["holm"] <= 0.05, rate
    assert rate["none"] >= 0.25 and rate["none"] >= 5 * max(rate["holm"], 0.01), rate
