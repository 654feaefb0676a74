"""A corpus of bad inputs for every input each command reads (run, report, compare, gate, attack, suites,
align), all through the CLI in-process (`aligneval.cli.main`).

Each case asserts: the documented exit code (never 1, never 70), exactly one line on stderr that starts
with "error:" and names the offending file, key or flag, no traceback, and nothing written anywhere
but the output folder the command was given (the case's folder, the world's files, the shared cache
and the crash-log folder are compared before and after). The rules behind the codes are in
docs/footguns.md ("Exit codes: which one, and why").
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest

from aligneval.cli import main
from tests.tiny import make_tiny_pair, write_fixture


# ---------------------------------------------------------------------------------------------
# the world every case starts from: two tiny models, a three-split fixture, two finished runs

SPEC = """\
name = "bad-inputs"
seed = 0
max_length = 24
batch_size = 16
[splits.dev]
role = "dev"
path = "{data}/dev.jsonl"
id_column = "id"
[splits.test]
role = "test"
path = "{data}/test.jsonl"
id_column = "id"
[splits.shifted]
role = "ood"
path = "{data}/ood.jsonl"
id_column = "id"
[suites.accuracy]
[suites.calibration]
"""

RULES = '"accuracy/accuracy [test]" = "no significant drop at 0.05"\n'


class World:
    def __init__(self, root: Path):
        from transformers import AutoModelForSequenceClassification

        from aligneval.runner import run

        self.root = root
        models = make_tiny_pair(root / "models")
        self.base, self.cand = str(models["baseline"]), str(models["aligned"])
        self.data = root / "data"
        for name, seed in (("dev", 1), ("test", 2), ("ood", 3)):
            write_fixture(self.data, n=32, name=name, seed=seed)
        self.spec = root / "spec.toml"
        self.spec.write_text(SPEC.format(data=self.data))
        self.run = root / "run"
        run(self.spec, {"baseline": self.base, "aligned": self.cand}, self.run, progress=False)
        # the same models on other test data: cannot be paired with `run`
        other = root / "other-data"
        for name, seed in (("dev", 1), ("test", 7), ("ood", 3)):
            write_fixture(other, n=32, name=name, seed=seed)
        (root / "other.toml").write_text(SPEC.format(data=other))
        self.other_run = root / "other-run"
        run(root / "other.toml", {"baseline": self.base, "aligned": self.cand}, self.other_run, progress=False)
        self.pickled = root / "pickled"
        shutil.copytree(self.base, self.pickled)
        (self.pickled / "model.safetensors").unlink()
        import torch  # transformers 5 ignores safe_serialization=False: pickle by hand

        torch.save(AutoModelForSequenceClassification.from_pretrained(self.base).state_dict(),
                   self.pickled / "pytorch_model.bin")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("ALIGNEVAL_CACHE", "off")
    try:
        yield World(tmp_path_factory.mktemp("world"))
    finally:
        mp.undo()


# ---------------------------------------------------------------------------------------------
# helpers that build one case's inputs inside its own folder `d` (outputs go to d/out)

def models(w: World) -> list[str]:
    return ["--model", f"baseline={w.base}", "--model", f"aligned={w.cand}"]


def spec(w: World, d: Path, old: str = "", new: str = "", text: str | None = None, name: str = "spec.toml") -> str:
    body = SPEC.format(data=w.data) if text is None else text
    if old:
        assert old in body, old
        body = body.replace(old, new)
    path = d / name
    path.write_text(body)
    return str(path)


def run_argv(w: World, d: Path, spec_path: str | None = None, *extra: str, with_models: bool = True) -> list[str]:
    argv = ["run", spec_path or str(w.spec), "--out", str(d / "out"), "--no-progress"]
    return argv + (models(w) if with_models else []) + list(extra)


def data_case(w: World, d: Path, file: str, content: str | bytes) -> list[str]:
    """The ood split reads `file` with `content`."""
    target = d / file
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run_argv(w, d, spec(w, d, f'path = "{w.data}/ood.jsonl"', f'path = "{target}"'))


def rows(*items: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in items)


def model_copy(w: World, d: Path, damage: Callable[[Path], None]) -> Path:
    folder = d / "model"
    shutil.copytree(w.cand, folder)
    damage(folder)
    return folder


def truncate(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def with_model(w: World, d: Path, damage: Callable[[Path], None]) -> list[str]:
    folder = model_copy(w, d, damage)
    return ["run", str(w.spec), "--out", str(d / "out"), "--no-progress", "--model", f"baseline={w.base}",
            "--model", f"aligned={folder}"]


def run_copy(w: World, d: Path, edit: Callable[[Path], None] | None = None, source: Path | None = None) -> Path:
    folder = d / "run"
    shutil.copytree(source or w.run, folder)
    if edit:
        edit(folder)
    return folder


def edit_doc(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        doc = json.loads((folder / "results.json").read_text())
        change(doc)
        (folder / "results.json").write_text(json.dumps(doc))
    return apply


def rewrite_parquet(file: Path, keep_rows: int | None = None, drop: str | None = None) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(file)
    if keep_rows is not None:
        table = table.slice(0, keep_rows)
    if drop:
        table = table.drop_columns([drop])
    pq.write_table(table, file)


def report_argv(run: Path | str, d: Path, *extra: str) -> list[str]:
    return ["report", str(run), "--out", str(d / "out"), "--resamples", "20", *extra]


def rules(d: Path, text: str | bytes = RULES) -> str:
    path = d / "rules.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def gate_argv(w: World, d: Path, rules_path: str | None = None, *extra: str, run: Path | None = None) -> list[str]:
    return ["gate", str(run or w.run), "--rules", rules_path or rules(d), "--resamples", "20", *extra]


def attack_argv(w: World, d: Path, *extra: str, data: str | None = None, model: list[str] | None = None) -> list[str]:
    argv = ["attack", "--data", data or str(w.data / "test.jsonl"), "--out", str(d / "out"), "-n", "2", "-q", "5"]
    return argv + (model if model is not None else ["--model", f"x={w.base}"]) + list(extra)


def align_argv(w: World, d: Path, *extra: str, model: str | None = None, train: str | None = None) -> list[str]:
    argv = ["align", "--model", model or w.base, "--train", train or str(w.data / "dev.jsonl"),
            "--out", str(d / "out"), "--no-progress", "--max-steps", "1"]
    return argv + list(extra)


def file_at(d: Path, name: str = "afile") -> Path:
    path = d / name
    path.write_text("not a folder\n")
    return path


# ---------------------------------------------------------------------------------------------
# the corpus: (id, exit code, regex the one line must match, argv builder)

Case = tuple[str, int, str, Callable[[World, Path], list[str]]]

RUN: list[Case] = [
    # the spec file and its keys
    ("run-spec-missing", 2, r"spec file not found: .*nope\.toml", lambda w, d: run_argv(w, d, str(d / "nope.toml"))),
    ("run-spec-is-folder", 2, r"spec .*: is a folder", lambda w, d: run_argv(w, d, str(d))),
    ("run-spec-unknown-name", 2, r"unknown spec 'sentiment-shif' \(did you mean 'sentiment-shift'\?\)",
     lambda w, d: run_argv(w, d, "sentiment-shif")),
    ("run-spec-malformed", 2, r"spec\.toml: malformed TOML: .*line 6",
     lambda w, d: spec(w, d, 'role = "dev"', 'role = = "dev"') and run_argv(w, d, str(d / "spec.toml"))),
    ("run-spec-not-utf8", 2, r"spec\.toml: not UTF-8",
     lambda w, d: (d / "spec.toml").write_bytes(b'name = "\xff\xfe"\n') and run_argv(w, d, str(d / "spec.toml"))),
    ("run-spec-unknown-key", 2, r"spec\.toml: unknown key 'max_lenght' \(did you mean 'max_length'\?\)",
     lambda w, d: run_argv(w, d, spec(w, d, "max_length", "max_lenght"))),
    ("run-spec-seed-type", 2, r"spec\.toml: seed: expected an integer",
     lambda w, d: run_argv(w, d, spec(w, d, "seed = 0", 'seed = "0"'))),
    ("run-spec-seed-negative", 2, r"spec\.toml: seed must be >= 0",
     lambda w, d: run_argv(w, d, spec(w, d, "seed = 0", "seed = -1"))),
    ("run-spec-max-length-0", 2, r"spec\.toml: max_length must be >= 1",
     lambda w, d: run_argv(w, d, spec(w, d, "max_length = 24", "max_length = 0"))),
    ("run-spec-batch-size-float", 2, r"spec\.toml: batch_size: expected an integer",
     lambda w, d: run_argv(w, d, spec(w, d, "batch_size = 16", "batch_size = 1.5"))),
    ("run-spec-no-splits", 2, r"spec\.toml: no \[splits\.<name>\] tables",
     lambda w, d: run_argv(w, d, spec(w, d, text='name = "x"\n[suites.accuracy]\n'))),
    ("run-spec-name-traversal", 2, r"spec\.toml: name '\.\./\.\./escaped'",
     lambda w, d: run_argv(w, d, spec(w, d, 'name = "bad-inputs"', 'name = "../../escaped"'))),
    ("run-split-traversal", 2, r"spec\.toml: split name '\.\./\.\./\.\./escaped'",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.shifted]", '[splits."../../../escaped"]'))),
    ("run-split-slash", 2, r"spec\.toml: split name 'a/b'",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.shifted]", '[splits."a/b"]'))),
    ("run-split-absolute", 2, r"spec\.toml: split name '/tmp/escaped'",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.shifted]", '[splits."/tmp/escaped"]'))),
    ("run-split-backslash", 2, r"spec\.toml: split name '\.\.\\\\x'",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.shifted]", "[splits.'..\\x']"))),
    ("run-split-dotdot", 2, r"spec\.toml: split name '\.\.'",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.shifted]", '[splits.".."]'))),
    ("run-split-empty-name", 2, r"spec\.toml: split name ''",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.shifted]", '[splits.""]'))),
    ("run-split-not-table", 2, r"spec\.toml: \[splits\.extra\]: expected a table",
     lambda w, d: run_argv(w, d, spec(w, d, "[splits.dev]", "[splits]\nextra = 3\n[splits.dev]"))),
    ("run-split-no-role", 2, r"spec\.toml: \[splits\.shifted\]: missing key 'role'",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"\n', ""))),
    ("run-split-no-path", 2, r"spec\.toml: \[splits\.shifted\]: missing key 'path'",
     lambda w, d: run_argv(w, d, spec(w, d, f'path = "{w.data}/ood.jsonl"\n', ""))),
    ("run-split-bad-role", 2, r"spec\.toml: \[splits\.shifted\] role: 'oood'.*did you mean 'ood'",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"', 'role = "oood"'))),
    ("run-split-unknown-key", 2, r"spec\.toml: \[splits\.test\] unknown key 'id_colum'",
     lambda w, d: run_argv(w, d, spec(w, d, f'path = "{w.data}/test.jsonl"\nid_column', f'path = "{w.data}/test.jsonl"\nid_colum'))),
    ("run-two-dev-splits", 2, r"spec\.toml: splits \['dev', 'shifted'\] all have role 'dev'",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"', 'role = "dev"'))),
    ("run-no-test-split", 2, r"spec\.toml: no split has role 'test' or 'ood'",
     lambda w, d: run_argv(w, d, spec(w, d, text=SPEC.format(data=w.data).replace('"test"', '"train"').replace('"ood"', '"train"')))),
    ("run-on-empty-bad", 2, r"spec\.toml: \[splits\.shifted\] on_empty: 'drop'",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"', 'role = "ood"\non_empty = "drop"'))),
    ("run-sample-zero", 2, r"spec\.toml: \[splits\.shifted\] sample: must be >= 1",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"', 'role = "ood"\nsample = 0'))),
    ("run-split-seed-negative", 2, r"spec\.toml: \[splits\.shifted\] seed: must be >= 0",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"', 'role = "ood"\nseed = -1\nsample = 5'))),
    ("run-label-map-value", 2, r"spec\.toml: \[splits\.shifted\] label_map\.0: expected a label name or id",
     lambda w, d: run_argv(w, d, spec(w, d, 'role = "ood"', 'role = "ood"\nlabel_map = { 0 = 1.5 }'))),
    ("run-suite-unknown", 2, r"spec\.toml: \[suites\.calibraton\]: unknown suite 'calibraton' \(did you mean 'calibration'\?\)",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.calibration]", "[suites.calibraton]"))),
    ("run-suite-setting-unknown", 2, r"spec\.toml: \[suites\.calibration\] unknown setting 'temprature'",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.calibration]", '[suites.calibration]\ntemprature = "grid"'))),
    ("run-suite-setting-type", 2, r"spec\.toml: \[suites\.calibration\] temperature: expected a string",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.calibration]", "[suites.calibration]\ntemperature = 2"))),
    ("run-suite-metric-unknown", 2, r"spec\.toml: \[suites\.accuracy\] unknown metric 'acc'",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.accuracy]", '[suites.accuracy]\nmetrics = ["acc"]'))),
    ("run-suite-metric-not-string", 2, r"spec\.toml: \[suites\.accuracy\] metrics: expected a list of strings",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.accuracy]", "[suites.accuracy]\nmetrics = [1, 2]"))),
    ("run-suites-empty", 2, r"spec\.toml: \[suites\] is empty",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.accuracy]\n[suites.calibration]\n", "[suites]\n"))),
    ("run-spec-model-name-traversal", 2, r"spec\.toml: \[models\] model name '\.\./\.\./x'",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.accuracy]", f'[models]\n"../../x" = "{w.base}"\n[suites.accuracy]'),
                           with_models=False)),
    ("run-spec-model-not-string", 2, r"spec\.toml: \[models\] base: expected a path or hub id",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.accuracy]", "[models]\nbase = 3\n[suites.accuracy]"), with_models=False)),
    ("run-spec-model-missing", 3, r"spec\.toml: \[models\] base: model folder not found: .*gone",
     lambda w, d: run_argv(w, d, spec(w, d, "[suites.accuracy]", f'[models]\nbase = "{d}/gone"\n[suites.accuracy]'),
                           with_models=False)),
    ("run-no-models", 2, r"spec\.toml: no models; pass --model", lambda w, d: run_argv(w, d, with_models=False)),
    # data files
    ("run-data-missing", 3, r"spec\.toml: \[splits\.shifted\] path: data file not found: .*gone\.jsonl",
     lambda w, d: run_argv(w, d, spec(w, d, "ood.jsonl", "gone.jsonl"))),
    ("run-data-parquet-corrupt", 3, r"\[splits\.shifted\]: cannot read .*bad\.parquet",
     lambda w, d: data_case(w, d, "bad.parquet", b"PAR1garbage")),
    ("run-data-parquet-0-byte", 3, r"\[splits\.shifted\]: cannot read .*zero\.parquet",
     lambda w, d: data_case(w, d, "zero.parquet", b"")),
    ("run-data-json-0-byte", 3, r"\[splits\.shifted\]: cannot read .*zero\.json",
     lambda w, d: data_case(w, d, "zero.json", b"")),
    ("run-data-jsonl-malformed", 3, r"\[splits\.shifted\]: cannot read .*bad\.jsonl",
     lambda w, d: data_case(w, d, "bad.jsonl", '{"id": "a", "text": \n')),
    ("run-data-csv-not-utf8", 3, r"\[splits\.shifted\]: cannot read .*latin\.csv",
     lambda w, d: data_case(w, d, "latin.csv", "id,text,label\na,caf\xe9 cr\xe8me,1\n".encode("latin-1"))),
    ("run-data-folder-not-dataset", 3, r"\[splits\.shifted\]: .*not a saved dataset",
     lambda w, d: (d / "folder").mkdir() or run_argv(w, d, spec(w, d, f'"{w.data}/ood.jsonl"', f'"{d}/folder"'))),
    ("run-data-csv-0-byte", 4, r"\[splits\.shifted\]: .*zero\.csv: the split is empty",
     lambda w, d: data_case(w, d, "zero.csv", b"")),
    ("run-data-csv-header-only", 4, r"\[splits\.shifted\]: .*header\.csv: the split is empty",
     lambda w, d: data_case(w, d, "header.csv", "id,text,label\n")),
    ("run-data-jsonl-0-byte", 4, r"\[splits\.shifted\]: .*zero\.jsonl: the split is empty",
     lambda w, d: data_case(w, d, "zero.jsonl", b"")),
    ("run-data-no-text-column", 4, r"\[splits\.shifted\]: .*no column 'text'",
     lambda w, d: data_case(w, d, "cols.jsonl", rows({"id": "a", "txt": "good", "label": 1}))),
    ("run-data-no-id-column", 4, r"\[splits\.shifted\]: .*no column 'id'",
     lambda w, d: data_case(w, d, "noid.jsonl", rows({"text": "good", "label": 1}))),
    ("run-data-null-texts", 4, r"\[splits\.shifted\]: .*1 null or empty text",
     lambda w, d: data_case(w, d, "nulls.jsonl", rows({"id": "a", "text": "good", "label": 1}, {"id": "b", "text": None, "label": 0}))),
    ("run-data-duplicate-ids", 4, r"\[splits\.shifted\]: .*duplicate id\(s\) \['same'\]",
     lambda w, d: data_case(w, d, "dupes.jsonl", rows({"id": "same", "text": "good", "label": 1}, {"id": "same", "text": "bad", "label": 0}))),
    ("run-data-labels-outside", 4, r"\[splits\.shifted\]: .*label id\(s\) \[7\] are outside",
     lambda w, d: data_case(w, d, "outside.jsonl", rows({"id": "a", "text": "good", "label": 1}, {"id": "b", "text": "bad", "label": 7}))),
    ("run-data-null-labels", 4, r"\[splits\.shifted\]: .*some labels are null",
     lambda w, d: data_case(w, d, "nolabel.jsonl", rows({"id": "a", "text": "good", "label": 1}, {"id": "b", "text": "bad", "label": None}))),
    ("run-data-string-labels", 4, r"\[splits\.shifted\]: .*do not match the model's label set",
     lambda w, d: data_case(w, d, "strings.jsonl", rows({"id": "a", "text": "good", "label": "pos"}))),
    ("run-data-unknown-format", 2, r"\[splits\.shifted\]: .*notes\.txt: unknown data format",
     lambda w, d: (d / "notes.txt").write_text("hello\n") and run_argv(w, d, spec(w, d, f'"{w.data}/ood.jsonl"', f'"{d}/notes.txt"'))),
    ("run-data-hub-offline", 5, r"\[splits\.shifted\]: .*'someone/dataset' is a hub dataset and the hub is switched off",
     lambda w, d: run_argv(w, d, spec(w, d, f'"{w.data}/ood.jsonl"', '"hub:someone/dataset"'))),
    # models
    ("run-model-not-pair", 2, r"--model 'justapath': expected NAME=PATH",
     lambda w, d: run_argv(w, d, None, "--model", "justapath", with_models=False)),
    ("run-model-name-traversal", 2, r"--model: model name '\.\./\.\./x'",
     lambda w, d: run_argv(w, d, None, "--model", f"../../x={w.base}", with_models=False)),
    ("run-model-name-twice", 2, r"model name 'baseline' is given twice",
     lambda w, d: run_argv(w, d, None, "--model", f"baseline={w.cand}")),
    ("run-model-missing", 3, r"^error: --model x: model folder not found: .*no/such/model",
     lambda w, d: run_argv(w, d, None, "--model", f"x={d}/no/such/model", with_models=False)),
    ("run-model-is-file", 3, r"model path .*afile is a file",
     lambda w, d: run_argv(w, d, None, "--model", f"x={file_at(d)}", with_models=False)),
    ("run-model-hub-offline", 5, r"model folder not found: someone/model; as a hub id it needs the hub",
     lambda w, d: run_argv(w, d, None, "--model", "x=someone/model", with_models=False)),
    ("run-model-no-weights", 3, r"model: no model weights",
     lambda w, d: with_model(w, d, lambda f: (f / "model.safetensors").unlink())),
    ("run-model-truncated-weights", 3, r"--model aligned: .*model: corrupt or truncated weights model\.safetensors",
     lambda w, d: with_model(w, d, lambda f: truncate(f / "model.safetensors"))),
    ("run-model-0-byte-weights", 3, r"model: corrupt or truncated weights model\.safetensors",
     lambda w, d: with_model(w, d, lambda f: (f / "model.safetensors").write_bytes(b""))),
    ("run-model-garbage-weights", 3, r"model: corrupt or truncated weights model\.safetensors",
     lambda w, d: with_model(w, d, lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 64))),
    ("run-model-pickle-only", 3, r"pickled: only a pickled checkpoint .*--allow-pickle",
     lambda w, d: run_argv(w, d, None, "--model", f"x={w.pickled}", with_models=False)),
    ("run-model-no-config", 3, r"model: no config\.json",
     lambda w, d: with_model(w, d, lambda f: (f / "config.json").unlink())),
    ("run-model-config-corrupt", 3, r"model/config\.json: corrupt",
     lambda w, d: with_model(w, d, lambda f: (f / "config.json").write_text("{"))),
    ("run-model-config-list", 3, r"model/config\.json: corrupt config \(not a JSON object\)",
     lambda w, d: with_model(w, d, lambda f: (f / "config.json").write_text("[1, 2]"))),
    ("run-model-config-id2label", 3, r"model/config\.json: unusable id2label",
     lambda w, d: with_model(w, d, lambda f: (f / "config.json").write_text(json.dumps(
         {**json.loads((f / "config.json").read_text()), "id2label": {"a": "neg", "b": "pos"}})))),
    ("run-model-no-tokenizer", 3, r"model: no tokenizer files",
     lambda w, d: with_model(w, d, lambda f: [p.unlink() for p in f.iterdir() if "tok" in p.name or "vocab" in p.name
                                             or "special" in p.name])),
    # the command line
    ("run-out-is-file", 2, r"--out .*afile: is a file, not a folder",
     lambda w, d: ["run", str(w.spec), "--out", str(file_at(d)), "--no-progress", *models(w)]),
    ("run-out-under-file", 2, r"--out .*afile/sub: .*afile is a file",
     lambda w, d: ["run", str(w.spec), "--out", str(file_at(d) / "sub"), "--no-progress", *models(w)]),
    ("run-suite-typo", 2, r"^error: --suite acuracy: unknown suite 'acuracy' \(did you mean 'accuracy'\?\)",
     lambda w, d: run_argv(w, d, None, "--suite", "acuracy")),
    ("run-suite-needs-dev", 2, r"--suite calibration \(not configured in the spec.*role 'dev'",
     lambda w, d: run_argv(w, d, spec(w, d, text=SPEC.format(data=w.data).replace('role = "dev"', 'role = "train"')
                                       .replace("[suites.calibration]\n", "")), "--suite", "calibration")),
    ("run-overwrite-guard", 2, r"results\.json holds results for spec 'bad-inputs' .*--overwrite",
     lambda w, d: ["run", str(w.spec), "--out", str(run_copy(w, d)), "--no-progress", "--model", f"other={w.base}"]),
    ("run-num-processes-zero", 2, r"--num-processes must be at least 1", lambda w, d: run_argv(w, d, None, "--num-processes", "0")),
    ("run-device-unknown", 2, r"unknown --device 'bogus'", lambda w, d: run_argv(w, d, None, "--device", "bogus")),
    ("run-unknown-option", 2, r"No such option: --bogus", lambda w, d: run_argv(w, d, None, "--bogus")),
    ("run-missing-spec-argument", 2, r"Missing argument 'spec'", lambda w, d: ["run"]),
]

REPORT: list[Case] = [
    ("report-run-missing", 3, r"results not found: .*nowhere", lambda w, d: report_argv(d / "nowhere", d)),
    ("report-results-corrupt", 3, r"run/results\.json: corrupt results document",
     lambda w, d: report_argv(run_copy(w, d, lambda f: (f / "results.json").write_text("{not json")), d)),
    ("report-results-not-object", 3, r"run/results\.json: corrupt results document \(not a JSON object\)",
     lambda w, d: report_argv(run_copy(w, d, lambda f: (f / "results.json").write_text("[]")), d)),
    ("report-results-not-utf8", 3, r"run/results\.json: corrupt results document",
     lambda w, d: report_argv(run_copy(w, d, lambda f: (f / "results.json").write_bytes(b'{"a": "\xff"}')), d)),
    ("report-results-schema", 3, r"run/results\.json: invalid results document",
     lambda w, d: report_argv(run_copy(w, d, edit_doc(lambda doc: doc.pop("records"))), d)),
    ("report-results-version", 3, r"run/results\.json: schema_version '9\.0' is not readable",
     lambda w, d: report_argv(run_copy(w, d, edit_doc(lambda doc: doc.update(schema_version="9.0"))), d)),
    ("report-results-truncated", 3, r"run/results\.json: corrupt results document",
     lambda w, d: report_argv(run_copy(w, d, lambda f: truncate(f / "results.json")), d)),
    ("report-predictions-missing", 3, r"predictions not found: .*aligned/test\.parquet",
     lambda w, d: report_argv(run_copy(w, d, lambda f: (f / "predictions/aligned/test.parquet").unlink()), d)),
    ("report-predictions-byte-truncated", 3, r"cannot read predictions .*aligned/test\.parquet",
     lambda w, d: report_argv(run_copy(w, d, lambda f: truncate(f / "predictions/aligned/test.parquet")), d)),
    ("report-predictions-row-truncated", 3, r"aligned/test\.parquet: corrupt or truncated predictions: 20 rows",
     lambda w, d: report_argv(run_copy(w, d, lambda f: rewrite_parquet(f / "predictions/aligned/test.parquet", keep_rows=20)), d)),
    ("report-predictions-no-probs", 3, r"cannot read predictions .*aligned/test\.parquet",
     lambda w, d: report_argv(run_copy(w, d, lambda f: rewrite_parquet(f / "predictions/aligned/test.parquet", drop="probs")), d)),
    ("report-predictions-other-data", 3, r"baseline/test\.parquet: predictions of other data",
     lambda w, d: report_argv(run_copy(w, d, lambda f: shutil.copy(w.other_run / "predictions/baseline/test.parquet",
                                                                    f / "predictions/baseline/test.parquet")), d)),
    ("report-split-traversal-in-results", 3, r"run/results\.json: predictions file '.*\.\./\.\./\.\./escaped\.parquet' would resolve outside",
     lambda w, d: report_argv(run_copy(w, d, edit_doc(_hostile_split)), d)),
    ("report-out-is-file", 2, r"--out .*afile: is a file",
     lambda w, d: ["report", str(w.run), "--out", str(file_at(d))]),
    ("report-out-under-file", 2, r"--out .*afile/sub: .*afile is a file",
     lambda w, d: ["report", str(w.run), "--out", str(file_at(d) / "sub")]),
    ("report-baseline-unknown", 2, r"no model 'basline' .*did you mean 'baseline'",
     lambda w, d: report_argv(w.run, d, "--baseline", "basline")),
    ("report-candidate-unknown", 2, r"no model 'alinged'",
     lambda w, d: report_argv(w.run, d, "--candidate", "alinged")),
    ("report-candidate-is-baseline", 2, r"baseline and candidate are the same model 'baseline'",
     lambda w, d: report_argv(w.run, d, "--candidate", "baseline")),
    ("report-resamples-zero", 2, r"--resamples must be at least 1",
     lambda w, d: report_argv(w.run, d, "--resamples", "0")),
    ("report-confidence", 2, r"confidence must lie strictly between 0 and 1",
     lambda w, d: report_argv(w.run, d, "--confidence", "1.5")),
    ("report-max-examples-negative", 2, r"Invalid value for '--max-examples'",
     lambda w, d: report_argv(w.run, d, "--max-examples", "-1")),
    ("report-format", 2, r"unknown report format 'pdf'", lambda w, d: report_argv(w.run, d, "--format", "pdf")),
    ("report-against-missing", 3, r"results not found: .*old-run",
     lambda w, d: report_argv(w.run, d, "--against", str(d / "old-run"))),
    ("report-against-other-data", 4, r"split '(dev|test|shifted)': cannot pair .*fingerprints differ",
     lambda w, d: report_argv(w.run, d, "--against", str(w.other_run))),
    ("report-one-model", 2, r"pick the candidate with --candidate",
     lambda w, d: report_argv(run_copy(w, d, edit_doc(_only_baseline)), d)),
    ("compare-out-is-folder", 2, r"--out .*comparison\.json: is a folder",
     lambda w, d: (d / "x" / "comparison.json").mkdir(parents=True) or ["compare", str(w.run), "--out", str(d / "x")]),
]


def _hostile_split(doc: dict) -> None:
    """A results.json whose split name climbs out of the run folder (hand-edited or malicious)."""
    doc["data"]["../../../escaped"] = doc["data"].pop("test")
    for r in doc["records"]:
        if r["split"] == "test":
            r["split"] = "../../../escaped"


def _only_baseline(doc: dict) -> None:
    doc["models"] = {"baseline": doc["models"]["baseline"]}
    doc["records"] = [r for r in doc["records"] if r["model"] == "baseline"]
    doc["curves"] = [c for c in doc["curves"] if c["model"] == "baseline"]


GATE: list[Case] = [
    ("gate-rules-missing", 2, r"rules file not found: .*nope\.toml",
     lambda w, d: gate_argv(w, d, str(d / "nope.toml"))),
    ("gate-rules-folder", 2, r"rules file not found: ", lambda w, d: gate_argv(w, d, str(d))),
    ("gate-rules-malformed", 2, r"rules\.toml: not valid TOML",
     lambda w, d: gate_argv(w, d, rules(d, '"accuracy/accuracy [test]" = = "x"\n'))),
    ("gate-rules-not-utf8", 2, r"rules\.toml: not UTF-8",
     lambda w, d: gate_argv(w, d, rules(d, b'"accuracy/accuracy [test]" = "\xff"\n'))),
    ("gate-rules-empty", 2, r"rules\.toml: no rules", lambda w, d: gate_argv(w, d, rules(d, "# nothing\n"))),
    ("gate-rule-bad-key", 2, r"rules\.toml:1: rule name 'accuracy' must look like",
     lambda w, d: gate_argv(w, d, rules(d, '"accuracy" = "candidate >= 0.5"\n'))),
    ("gate-rule-not-string", 2, r"rules\.toml:1: rule 'accuracy/accuracy \[test\]' must be a string",
     lambda w, d: gate_argv(w, d, rules(d, '"accuracy/accuracy [test]" = 0.5\n'))),
    ("gate-rule-unreadable", 2, r"rules\.toml:1: cannot read rule",
     lambda w, d: gate_argv(w, d, rules(d, '"accuracy/accuracy [test]" = "better please"\n'))),
    ("gate-rule-alpha", 2, r"rules\.toml:1: .*significance level must lie between 0 and 1",
     lambda w, d: gate_argv(w, d, rules(d, '"accuracy/accuracy [test]" = "no significant drop at 2"\n'))),
    ("gate-rule-unknown-metric", 2, r"rules\.toml:1: .*'acuracy'",
     lambda w, d: gate_argv(w, d, rules(d, '"accuracy/acuracy [test]" = "candidate >= 0.5"\n'))),
    ("gate-setting-unknown", 2, r"rules\.toml:3: unknown \[gate\] setting 'resampels'",
     lambda w, d: gate_argv(w, d, rules(d, RULES + "[gate]\nresampels = 10\n"))),
    ("gate-setting-type", 2, r"rules\.toml:3: \[gate\] resamples must be",
     lambda w, d: gate_argv(w, d, rules(d, RULES + '[gate]\nresamples = "ten"\n'))),
    ("gate-run-missing", 3, r"results not found: .*nowhere", lambda w, d: gate_argv(w, d, None, run=d / "nowhere")),
    ("gate-against-missing", 3, r"results not found: .*old-run",
     lambda w, d: gate_argv(w, d, None, "--against", str(d / "old-run"))),
    ("gate-against-other-data", 4, r"split '(dev|test|shifted)': cannot pair .*fingerprints differ",
     lambda w, d: gate_argv(w, d, None, "--against", str(w.other_run))),
    ("gate-candidate-unknown", 2, r"no model 'alinged'", lambda w, d: gate_argv(w, d, None, "--candidate", "alinged")),
    ("gate-predictions-row-truncated", 3, r"aligned/test\.parquet: corrupt or truncated predictions",
     lambda w, d: gate_argv(w, d, None, run=run_copy(w, d, lambda f: rewrite_parquet(f / "predictions/aligned/test.parquet", keep_rows=5)))),
    ("gate-results-corrupt", 3, r"run/results\.json: corrupt results document",
     lambda w, d: gate_argv(w, d, None, run=run_copy(w, d, lambda f: (f / "results.json").write_text("")))),
    ("gate-junit-is-folder", 2, r"--junit .*: is a folder", lambda w, d: gate_argv(w, d, None, "--junit", str(d))),
    ("gate-junit-under-file", 2, r"--junit .*afile/junit\.xml: .*afile is a file",
     lambda w, d: gate_argv(w, d, None, "--junit", str(file_at(d) / "junit.xml"))),
    ("gate-summary-under-file", 2, r"--summary .*afile/summary\.md: .*afile is a file",
     lambda w, d: gate_argv(w, d, None, "--summary", str(file_at(d) / "summary.md"))),
    ("gate-resamples-type", 2, r"Invalid value for '--resamples'",
     lambda w, d: gate_argv(w, d, None, "--resamples", "many")),
]

ATTACK: list[Case] = [
    ("attack-no-model", 2, r"attack needs --model NAME=PATH", lambda w, d: attack_argv(w, d, model=[])),
    ("attack-no-data", 2, r"attack needs --model NAME=PATH \(one or more\) and --data FILE",
     lambda w, d: ["attack", "--model", f"x={w.base}", "--out", str(d / "out")]),
    ("attack-model-not-pair", 2, r"--model expects NAME=PATH, got 'justapath'",
     lambda w, d: attack_argv(w, d, model=["--model", "justapath"])),
    ("attack-model-name-traversal", 2, r"--model: model name '\.\./\.\./x'",
     lambda w, d: attack_argv(w, d, model=["--model", f"../../x={w.base}"])),
    ("attack-model-twice", 2, r"--model: name 'x' given twice",
     lambda w, d: attack_argv(w, d, model=["--model", f"x={w.base}", "--model", f"x={w.cand}"])),
    ("attack-model-missing", 3, r"--model x: model folder not found: .*gone",
     lambda w, d: attack_argv(w, d, model=["--model", f"x={d}/gone"])),
    ("attack-model-is-file", 3, r"--model x: .*afile is a file",
     lambda w, d: attack_argv(w, d, model=["--model", f"x={file_at(d)}"])),
    ("attack-model-truncated-weights", 3, r"model: corrupt or truncated weights model\.safetensors",
     lambda w, d: attack_argv(w, d, model=["--model", f"x={model_copy(w, d, lambda f: truncate(f / 'model.safetensors'))}"])),
    ("attack-model-pickle-only", 3, r"--model x: .*pickled: no \*\.safetensors weights",
     lambda w, d: attack_argv(w, d, model=["--model", f"x={w.pickled}"])),
    ("attack-data-missing", 3, r"data file not found: .*gone\.csv",
     lambda w, d: attack_argv(w, d, data=str(d / "gone.csv"))),
    ("attack-data-header-only", 4, r"header\.csv: the split is empty",
     lambda w, d: (d / "header.csv").write_text("id,text,label\n") and attack_argv(w, d, data=str(d / "header.csv"))),
    ("attack-data-text-column", 4, r"test\.jsonl: no column 'sentence'",
     lambda w, d: attack_argv(w, d, "--text-column", "sentence")),
    ("attack-recipe-unknown", 2, r"'deepwordbog'.*did you mean 'deepwordbug'",
     lambda w, d: attack_argv(w, d, "--recipe", "deepwordbog")),
    ("attack-recipe-traversal", 2, r"'\.\./\.\./x'", lambda w, d: attack_argv(w, d, "--recipe", "../../x")),
    ("attack-query-budget-zero", 2, r"Invalid value for '--query-budget'",
     lambda w, d: attack_argv(w, d, "--query-budget", "0")),
    ("attack-num-examples-negative", 2, r"Invalid value for '--num-examples'",
     lambda w, d: attack_argv(w, d, "--num-examples", "-3")),
    ("attack-batch-size-zero", 2, r"Invalid value for '--batch-size'",
     lambda w, d: attack_argv(w, d, "--batch-size", "0")),
    ("attack-time-budget-negative", 2, r"--time-budget must be a positive number",
     lambda w, d: attack_argv(w, d, "--time-budget", "-1")),
    ("attack-examples-mode", 2, r"examples must be one of", lambda w, d: attack_argv(w, d, "--examples", "some")),
    ("attack-out-is-file", 2, r"--out .*afile: is a file",
     lambda w, d: ["attack", "--data", str(w.data / "test.jsonl"), "--model", f"x={w.base}", "--out", str(file_at(d))]),
]

SUITES: list[Case] = [
    ("suites-show-unknown", 2, r"no suite or spec named 'acuracy' \(did you mean 'accuracy'\?\)",
     lambda w, d: ["suites", "show", "acuracy"]),
    ("suites-show-missing-spec", 2, r"spec file not found: .*gone\.toml",
     lambda w, d: ["suites", "show", str(d / "gone.toml")]),
    ("suites-show-traversal", 2, r"no suite or spec named '\.\./\.\./etc'",
     lambda w, d: ["suites", "show", "../../etc"]),
    ("suites-validate-missing", 2, r"spec file not found: .*gone\.toml",
     lambda w, d: ["suites", "validate", str(d / "gone.toml")]),
    ("suites-validate-malformed", 2, r"spec\.toml: malformed TOML",
     lambda w, d: ["suites", "validate", spec(w, d, "[suites.accuracy]", "[suites.accuracy")]),
    ("suites-validate-data-missing", 3, r"spec\.toml: \[splits\.shifted\] path: data file not found",
     lambda w, d: ["suites", "validate", spec(w, d, "ood.jsonl", "gone.jsonl")]),
    ("suites-validate-split-traversal", 2, r"spec\.toml: split name '\.\./escaped'",
     lambda w, d: ["suites", "validate", spec(w, d, "[splits.shifted]", '[splits."../escaped"]')]),
    ("suites-unknown-command", 2, r"No such command 'lst'", lambda w, d: ["suites", "lst"]),
    ("suites-no-command", 2, r"aligneval suites: missing command", lambda w, d: ["suites"]),
    ("cli-unknown-command", 2, r"No such command 'allign'", lambda w, d: ["allign"]),
]

ALIGN: list[Case] = [
    ("align-no-model", 2, r"Missing option '--model'",
     lambda w, d: ["align", "--train", str(w.data / "dev.jsonl"), "--out", str(d / "out")]),
    ("align-no-train", 2, r"Missing option '--train'",
     lambda w, d: ["align", "--model", w.base, "--out", str(d / "out")]),
    ("align-variant-unknown", 2, r"'gann'.*did you mean 'gan'", lambda w, d: align_argv(w, d, "--variant", "gann")),
    ("align-seeds", 2, r"--seeds takes integers like 13,21,42, not 'a,b'",
     lambda w, d: align_argv(w, d, "--seeds", "a,b")),
    ("align-variant-option", 2, r"--variant-option takes KEY=VALUE, not 'eps'",
     lambda w, d: align_argv(w, d, "--variant-option", "eps")),
    ("align-train-missing", 3, r"data file not found: .*gone\.csv",
     lambda w, d: align_argv(w, d, train=str(d / "gone.csv"))),
    ("align-train-header-only", 4, r"header\.csv: the split is empty",
     lambda w, d: (d / "header.csv").write_text("text,label\n") and align_argv(w, d, train=str(d / "header.csv"))),
    ("align-train-one-class", 4, r"one\.jsonl: the label column has 1 class",
     lambda w, d: (d / "one.jsonl").write_text(rows({"text": "good", "label": 1}, {"text": "fine", "label": 1}))
     and align_argv(w, d, train=str(d / "one.jsonl"))),
    ("align-model-missing", 3, r"model folder not found: .*gone", lambda w, d: align_argv(w, d, model=str(d / "gone"))),
    ("align-model-truncated-weights", 3, r"model: corrupt or truncated weights model.safetensors",
     lambda w, d: align_argv(w, d, model=str(model_copy(w, d, lambda f: truncate(f / "model.safetensors"))))),
    ("align-out-is-file", 2, r"--out .*afile: is a file",
     lambda w, d: ["align", "--model", w.base, "--train", str(w.data / "dev.jsonl"), "--out", str(file_at(d))]),
]

CASES = RUN + REPORT + GATE + ATTACK + SUITES + ALIGN


def test_the_corpus_is_large_and_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
    assert {i.split("-")[0] for i in ids} >= {"run", "report", "compare", "gate", "attack", "suites", "align"}


def _snapshot(*roots: Path) -> dict[Path, tuple[int, int]]:
    found = {}
    for root in roots:
        for p in root.rglob("*"):
            st = p.lstat()
            found[p] = (st.st_size, st.st_mtime_ns if p.is_file() else 0)
    return found


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case: Case, world: World, tmp_path, monkeypatch, capsys):
    label, code, pattern, build = case
    case_dir, out = tmp_path / "case", tmp_path / "case" / "out"
    case_dir.mkdir()
    monkeypatch.chdir(case_dir)  # default output folders (runs/<name>, reports/<run>) would land here
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ALIGNEVAL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    argv = [str(a) for a in build(world, case_dir)]
    capsys.readouterr()
    before = _snapshot(tmp_path, world.root)

    got = main(argv)

    err = capsys.readouterr().err
    assert got == code, f"{label}: exit {got} (expected {code}); stderr {err!r}"
    assert err.startswith("error: ") and err.count("\n") == 1, f"{label}: not one line: {err!r}"
    assert "Traceback" not in err and "internal error" not in err, label
    assert re.search(pattern, err), f"{label}: {err!r} does not match {pattern!r}"
    after = _snapshot(tmp_path, world.root)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    outside = sorted(str(p) for p in changed if p != out and out not in p.parents)
    assert not outside, f"{label}: wrote outside the output folder: {outside}"
    assert not (out / "results.json").exists() and not (out / "report.html").exists(), label


def test_traversal_split_writes_nothing_outside_out(world, tmp_path, monkeypatch):
    """The issue's example: `[splits."../../../escaped"]` is refused at load, and even a run that got past
    the spec (e.g. a Spec built in Python) cannot put a parquet outside the run folder."""
    from dataclasses import replace

    from aligneval.errors import ArtifactError, UsageError
    from aligneval.runner import run
    from aligneval.spec import load_spec

    monkeypatch.setenv("ALIGNEVAL_CACHE", "off")
    monkeypatch.chdir(tmp_path)
    text = SPEC.format(data=world.data).replace("[splits.shifted]", '[splits."../../../escaped"]')
    (tmp_path / "evil.toml").write_text(text)
    with pytest.raises(UsageError, match=r"split name '\.\./\.\./\.\./escaped'"):
        load_spec(tmp_path / "evil.toml")
    good = load_spec(world.spec)
    splits = dict(good.splits)
    splits["../../../escaped"] = replace(splits.pop("shifted"), name="../../../escaped")
    out = tmp_path / "a" / "b" / "run"
    before = _snapshot(tmp_path)
    with pytest.raises(ArtifactError, match="would resolve outside"):
        run(replace(good, splits=splits), {"baseline": world.base}, out, progress=False)
    written = [p for p in set(_snapshot(tmp_path)) - set(before) if out not in p.parents and p != out]
    assert all(p in out.parents for p in written), written  # at most the folders leading to out
    assert not list(tmp_path.rglob("*escaped*"))


def test_unforeseen_exception_exits_70_with_a_log(world, tmp_path, monkeypatch, capsys):
    """A bug is never exit 1 (CI would read a regression): one line naming a log that holds the traceback."""
    import aligneval.runner

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setenv("ALIGNEVAL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(aligneval.runner, "run", bug)
    assert main(["run", str(world.spec), "--out", str(tmp_path / "out")]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error") and "ZeroDivisionError" in err
    log = Path(re.search(r"traceback in (\S+\.log)", err).group(1))
    assert log.parent == tmp_path / "logs" and "Traceback (most recent call last)" in log.read_text()
    assert "def bug" not in err and not (tmp_path / "out").exists()


def test_a_stray_exit_1_outside_the_gate_is_not_a_regression(tmp_path, monkeypatch, capsys):
    import aligneval.runner

    def exits(*args, **kwargs):
        raise SystemExit(1)

    monkeypatch.setenv("ALIGNEVAL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(aligneval.runner, "run", exits)
    assert main(["run", "whatever.toml"]) == 70
    assert "internal error" in capsys.readouterr().err


def test_crash_log_falls_back_when_the_log_dir_is_unusable(tmp_path, monkeypatch):
    from aligneval.cli import write_crash_log

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("ALIGNEVAL_LOG_DIR", str(blocker / "logs"))  # cannot be created under a file
    try:
        raise KeyError("x")
    except KeyError as exc:
        log = write_crash_log(exc, ["run"])
    assert log is not None and log.is_file() and "KeyError" in log.read_text()
    assert blocker not in log.parents
    log.unlink()


@pytest.mark.parametrize("name", ["baseline", "baseline@13", "ood_amazon", "v1.2", "a+b", "A-1", "x" * 128])
def test_safe_names_pass(name):
    from aligneval.paths import check_name

    assert check_name(name, "split name") == name


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-x", "_x", "a/b", "a\\b", "../x", "/abs", "a b", "a.",
                                  "a:b", "a\x00b", "é", "x" * 129, 3, None])
def test_unsafe_names_are_refused(name):
    from aligneval.errors import UsageError
    from aligneval.paths import check_name

    with pytest.raises(UsageError, match=r"^split name .*\(it names a file\)"):
        check_name(name, "split name")


def test_inside_follows_symlinks_before_deciding(tmp_path):
    """A link inside the root that points outside is outside: containment is checked on the resolved path."""
    from aligneval.errors import ArtifactError
    from aligneval.paths import inside

    root, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (root / "predictions").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "predictions" / "m").symlink_to(elsewhere)
    assert inside(root, "predictions", "ok", "test.parquet") == root / "predictions" / "ok" / "test.parquet"
    with pytest.raises(ArtifactError, match="would resolve outside"):
        inside(root, "predictions", "m", "test.parquet")


def test_output_checks_only_look(tmp_path):
    """The checks create nothing, accept a new nested folder, and refuse broken links."""
    from aligneval.errors import UsageError
    from aligneval.paths import check_output_dir, check_output_file

    assert check_output_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    assert check_output_file(tmp_path / "x" / "junit.xml", "--junit") == tmp_path / "x" / "junit.xml"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="broken symbolic link"):
        check_output_dir(tmp_path / "dangling")
    with pytest.raises(UsageError, match="broken symbolic link"):
        check_output_file(tmp_path / "dangling", "--summary")
