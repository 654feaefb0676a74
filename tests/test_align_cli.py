"""`aligneval align` through `aligneval.cli.main`: a working run, and every bad input as one line
on stderr with a non-zero exit code and no traceback."""

from __future__ import annotations

import json

import pytest

from aligneval.cli import main
from aligneval.commands.align import parse_options, parse_seeds
from aligneval.errors import UsageError
from tests.tiny import make_tiny_model, write_fixture

FAST = ["--max-steps", "2", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return {"model": str(make_tiny_model(tmp)), "train": str(write_fixture(tmp, n=32)), "tmp": tmp}


def _one_line_error(capsys, code, expected_code, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_align_runs_and_prints_folders(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["align", "--model", tiny["model"], "--train", tiny["train"], "--dev", tiny["train"],
                 "--variant", "mmd", "--lambda", "0.1", "--seeds", "13,21", "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert code == 0
    assert str(out / "seed-21" / "aligned") in printed
    card = json.loads((out / "seed-13" / "aligned" / "alignment.json").read_text())
    assert card["variant"] == "mmd" and card["lambda"] == 0.1 and card["hyperparameters"]["max_steps"] == 2
    # Re-running the same command skips the finished seeds.
    assert main(["align", "--model", tiny["model"], "--train", tiny["train"], "--dev", tiny["train"],
                 "--variant", "mmd", "--lambda", "0.1", "--seed", "13", "--seed", "21", "--out", str(out),
                 *FAST]) == 0
    assert "already finished" in capsys.readouterr().out
    # The same folder with another variant is a different run.
    code = main(["align", "--model", tiny["model"], "--train", tiny["train"], "--dev", tiny["train"],
                 "--variant", "gan", "--seeds", "13,21", "--out", str(out), *FAST])
    _one_line_error(capsys, code, 2, "different run", "--overwrite")


def _align(tiny, tmp_path, *extra):
    return main(["align", "--model", tiny["model"], "--train", tiny["train"], "--out", str(tmp_path / "o"),
                 *FAST, *extra])


def test_missing_data_file(tiny, tmp_path, capsys):
    code = main(["align", "--model", tiny["model"], "--train", str(tmp_path / "nope.csv"), "--out",
                 str(tmp_path / "o"), *FAST])
    _one_line_error(capsys, code, 3, "nope.csv")


def test_misnamed_text_and_label_columns(tiny, tmp_path, capsys):
    _one_line_error(capsys, _align(tiny, tmp_path, "--text-column", "txt"), 4, "txt", "did you mean 'text'")
    _one_line_error(capsys, _align(tiny, tmp_path, "--label-column", "lable"), 4, "lable")


def test_one_class_label_column(tiny, tmp_path, capsys):
    path = tmp_path / "one.jsonl"
    path.write_text("".join(json.dumps({"text": f"text number {i}", "label": 1}) + "\n" for i in range(10)))
    code = main(["align", "--model", tiny["model"], "--train", str(path), "--out", str(tmp_path / "o"), *FAST])
    _one_line_error(capsys, code, 4, "1 class")


def test_unknown_variant_and_negative_lambda(tiny, tmp_path, capsys):
    _one_line_error(capsys, _align(tiny, tmp_path, "--variant", "ganm"), 2, "did you mean 'gan'")
    _one_line_error(capsys, _align(tiny, tmp_path, "--lambda", "-0.5"), 2, "--lambda")


def test_unsupported_architecture_and_override(tiny, tmp_path, capsys):
    # megatron-bert: known to transformers, not in the q/k registry (its projections are query/key).
    import torch
    from transformers import AutoModelForSequenceClassification, MegatronBertConfig

    from tests.tiny import make_tokenizer

    folder = tmp_path / "megatron"
    tokenizer = make_tokenizer(folder)
    config = MegatronBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=64, max_position_embeddings=80)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    capsys.readouterr()  # transformers 5's own "Writing model shards" bar, not aligneval's output
    code = main(["align", "--model", str(folder), "--train", tiny["train"], "--out", str(tmp_path / "m"), *FAST])
    line = _one_line_error(capsys, code, 2, "megatron-bert", "--qk-pattern", "distilbert")
    assert "supported are" in line
    code = main(["align", "--model", str(folder), "--train", tiny["train"], "--out", str(tmp_path / "m"),
                 "--qk-pattern", "query,key", *FAST])
    assert code == 0, capsys.readouterr().err


def test_missing_model_folder(tiny, tmp_path, capsys):
    code = main(["align", "--model", str(tmp_path / "no-model"), "--train", tiny["train"], "--out",
                 str(tmp_path / "o"), *FAST])
    _one_line_error(capsys, code, 3, "no-model")


def test_seed_and_option_parsing():
    assert parse_seeds(None, None) == (13,)
    assert parse_seeds([13], "21,42") == (13, 21, 42)
    assert parse_seeds(None, "13 21") == (13, 21)
    with pytest.raises(UsageError):
        parse_seeds(None, "13,x")
    assert parse_options(["navigator=adversarial", "eps=0.05", "iters=20", "relative=false"]) == {
        "navigator": "adversarial", "eps": 0.05, "iters": 20, "relative": False}
    with pytest.raises(UsageError):
        parse_options(["novalue"])
