"""The compare/ package's contracts: typed rows that round-trip comparison.json byte for byte, the one
way to get a run's comparisons, the twin naming contract, the record-bases registry, and no import
back from compare into the report, the gate or the CLI."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

import aligneval.compare as compare_pkg
from aligneval.compare import (BASES, ComparisonRow, compare, comparisons, find_twins, lambda_in_name, model_groups,
                               twin_name)
from aligneval.errors import ArtifactError
from tests.fixtures_alignment import lam_name, make_dose_run
from tests.fixtures_results import make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg")
    return {"single": make_run(root / "single", n=120), "seeds": make_run(root / "seeds", n=80, seeds=[13, 42]),
            "dose": make_dose_run(root / "dose", n=60)}


@pytest.mark.parametrize("kind", ["single", "seeds"])
def test_rows_round_trip_comparison_json_byte_for_byte(runs, kind, tmp_path):
    comp = compare(runs[kind], resamples=60, max_resamples=60)
    path = comp.write(tmp_path / "comparison.json")
    stored = json.loads(path.read_text())["comparison"]["records"]
    assert stored and len(stored) == len(comp.records)
    for d, row in zip(stored, comp.records):
        assert isinstance(row, ComparisonRow)
        again = ComparisonRow.from_dict(d)
        assert json.dumps(again.to_dict()) == json.dumps(d)  # same keys, same order, same values
        assert again == row
        assert (row.metric, row.split, row.verdict, row.p_value) == (d["metric"], d["split"], d["verdict"], d["p_value"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        comp.records[0].delta = 0.0
    # optional fields appear only where the computation set them
    assert all(("seeds" in d) == (kind == "seeds") for d in stored)
    assert any("p_mc_se" in d for d in stored) == (kind == "single")


def test_a_row_without_its_core_fields_is_a_corrupt_artifact():
    with pytest.raises(ArtifactError, match="lacks"):
        ComparisonRow.from_dict({"suite": "accuracy", "split": "test", "metric": "accuracy"})


def test_comparisons_reads_a_fresh_file_and_computes_otherwise(runs, tmp_path):
    run = runs["single"]
    settings = dict(resamples=60, max_resamples=60)
    path = tmp_path / "comparison.json"
    assert comparisons(run, stored=[path], compute=False, **settings) == []
    [computed] = comparisons(run, stored=[path], **settings)
    assert computed.source == "computed" and computed.stale == []
    computed.write(path)
    [read] = comparisons(run, stored=[path], **settings)
    assert read.source == str(path) and read.records == computed.records
    [again] = comparisons(run, stored=[path], seed=1, **settings)
    assert again.source == "computed" and "seed was 0, now 1" in again.stale[0]


def test_comparisons_gives_one_per_twin_in_lambda_order(runs):
    run = runs["dose"]
    found = comparisons(run, resamples=30, max_resamples=30)
    assert [c.candidate for c in found] == [lam_name(x) for x in (0.01, 0.1, 1.0)] == find_twins(compare_pkg.load(run))
    [one] = comparisons(run, candidate=lam_name(0.1), resamples=30, max_resamples=30)
    assert one.candidate == lam_name(0.1)


@pytest.mark.parametrize("lam", [0.0, 1e-5, 0.01, 0.1, 0.5, 1.0, 2.0, 30.0, 1.5e-3])
def test_the_twin_naming_contract_is_written_and_parsed_in_one_place(lam):
    name = twin_name(lam)
    assert name == lam_name(lam)  # the test fixtures' own writer (format(λ, "g"))
    assert lambda_in_name(name) == lam and lambda_in_name(f"{name}@13") == lam
    assert model_groups([f"{name}@13", f"{name}@42", "baseline"]) == {name: [f"{name}@13", f"{name}@42"],
                                                                      "baseline": ["baseline"]}
    assert twin_name(lam, grid=False) == "aligned" and lambda_in_name("aligned") is None


def test_record_bases_registry():
    assert set(BASES.names()) == {"predictions", "attack", "per_example"}
    assert [n for n in BASES.names() if BASES.get(n).grouped] == ["predictions"]
    with pytest.raises(Exception, match="record basis"):
        BASES.get("logits")


def test_compare_imports_nothing_from_later_stages():
    later = ("aligneval.report", "aligneval.gate", "aligneval.commands", "aligneval.cli", "aligneval.findings",
             "aligneval.card", "aligneval.publish", "aligneval.tracking")
    for file in Path(compare_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.startswith(later)]
            assert not bad, f"{file.name} imports {bad}"


def test_every_public_name_is_what_it_says_not_a_submodule():
    import importlib
    import types

    for module in ("bases", "comparison", "compute", "models", "options", "planning", "refine", "rows", "runs",
                   "stored", "stats", "resampling", "multiplicity", "seeds", "single"):
        importlib.import_module(f"aligneval.compare.{module}")  # loading a submodule must not shadow a name
    for name in compare_pkg.__all__:
        assert not isinstance(getattr(compare_pkg, name), types.ModuleType), name
    assert callable(compare_pkg.plan) and callable(compare_pkg.compare) and callable(compare_pkg.comparisons)
