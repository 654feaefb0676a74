"""Texts holding Unicode line separators survive every stage: JSON lines are split at "\\n" only.

`json.dumps(..., ensure_ascii=False)` writes U+0085, U+2028 and U+2029 raw; `str.splitlines()` also
splits at those, at \\x1c-\\x1e, \\v, \\f and \\r. One such character in one input text used to make
`aligneval report` call a fine attack log corrupt (exit 3).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from aligneval.artifacts import json_lines, read_json_lines
from aligneval.cli import main
from aligneval.errors import ArtifactError
from tests.tiny import make_tiny_model, sentences

# every character str.splitlines() splits at, besides "\n" itself
SEPARATORS = ["\x85", "\u2028", "\u2029", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c", "\r", "\r\n"]


def _rows(n: int, seed: int) -> list[dict]:
    """Fixture sentences, each separator put inside one text (and one text ending in it)."""
    rows = []
    for i, (text, label) in enumerate(sentences(n, seed)):
        sep = SEPARATORS[i % len(SEPARATORS)] if i < 2 * len(SEPARATORS) else ""
        words = text.split()
        text = " ".join(words[:2]) + sep + " ".join(words[2:]) if i < len(SEPARATORS) else text + sep
        rows.append({"id": f"r{seed}-{i}", "text": text, "label": label})
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reader_splits_at_newline_only(tmp_path):
    rows = [{"id": str(i), "text": f"a{sep}b"} for i, sep in enumerate(SEPARATORS)]
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    assert len(data.decode("utf-8").splitlines()) > len(rows)  # the trap this reader avoids
    assert [obj for obj, _ in json_lines(data)] == rows
    assert read_json_lines(_write(tmp_path / "x.jsonl", rows)) == rows
    # a cut last line: kept by the plain reader, left out for an append-only log
    cut = data + b'{"id": "late"'
    assert [obj for obj, _ in json_lines(cut, complete_only=True)] == rows
    (tmp_path / "bad.jsonl").write_bytes(data + b"not json\n")
    with pytest.raises(ArtifactError, match=f"line {len(rows) + 1}"):
        read_json_lines(tmp_path / "bad.jsonl")


HAS_TEXTATTACK = importlib.util.find_spec("textattack") is not None  # not on the transformers 5 stack


@pytest.mark.slow
def test_align_run_attack_report_gate_over_separators(tmp_path, monkeypatch, capsys):
    """With TextAttack (the legacy stack) the run attacks with deepwordbug; without it (transformers 5)
    align, run, report and gate still go over the same texts."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    train = _write(data / "train.jsonl", _rows(48, 1))
    dev = _write(data / "dev.jsonl", _rows(40, 2))
    test_rows = _rows(40, 3)
    _write(data / "test.jsonl", test_rows)
    model = make_tiny_model(tmp_path / "m")

    pair = tmp_path / "pair"
    assert main(["align", "--model", str(model), "--train", str(train), "--dev", str(dev), "--out", str(pair),
                 "--variant", "mmd", "--lambda", "0.1", "--max-steps", "2", "--batch-size", "8",
                 "--no-progress"]) == 0
    log = read_json_lines(pair / "aligned" / "train_log.jsonl")
    assert log, "the training log reads back"

    spec = data / "spec.toml"
    spec.write_text('name = "separators"\nseed = 0\nmax_length = 32\nbatch_size = 16\n'
                    '[splits.dev]\nrole = "dev"\npath = "dev.jsonl"\nid_column = "id"\n'
                    '[splits.test]\nrole = "test"\npath = "test.jsonl"\nid_column = "id"\n'
                    '[suites.accuracy]\n'
                    + ('[suites.adversarial]\nrecipes = ["deepwordbug"]\nnum_examples = 20\nquery_budget = 20\n'
                       'examples = "all"\n' if HAS_TEXTATTACK else ''), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--model", f"baseline={pair / 'baseline'}", "--model",
                 f"aligned={pair / 'aligned'}", "--out", str(run), "--no-progress"]) == 0
    if HAS_TEXTATTACK:
        attack_log = run / "attacks" / "baseline" / "deepwordbug.jsonl"
        text = attack_log.read_text(encoding="utf-8")
        assert any(sep in text for sep in ("\x85", "\u2028", "\u2029")), "raw separators reach the attack log"
        attacked = read_json_lines(attack_log)[1:]
        assert len(attacked) == 20 and {r["id"] for r in attacked} <= {r["id"] for r in test_rows}

    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["report", str(run), "--out", str(report)]) == 0, capsys.readouterr().err
    assert ("deepwordbug" in (report / "report.md").read_text(encoding="utf-8")) == HAS_TEXTATTACK

    rules = tmp_path / "rules.toml"
    rules.write_text('"accuracy/accuracy [test]" = "candidate >= 0"\n'
                     + ('"adversarial/deepwordbug:accuracy_under_attack [test]" = "candidate >= baseline - 1"\n'
                        if HAS_TEXTATTACK else '')
                     + '[gate]\nbaseline = "baseline"\ncandidate = "aligned"\n', encoding="utf-8")
    assert main(["gate", str(run), "--rules", str(rules)]) == 0, capsys.readouterr().err
