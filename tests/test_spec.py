"""Spec loading: every option parses; every mistake is one UsageError/ArtifactError naming file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aligneval.cli import main
from aligneval.errors import ArtifactError, UsageError
from aligneval.spec import builtin_specs, load_spec, resolve_spec_path

GOOD = """
name = "t"
seed = 3
max_length = 32
batch_size = 8
[splits.dev]
role = "dev"
path = "dev.jsonl"
[splits.test]
role = "test"
path = "test.jsonl"
id_column = "id"
sample = 10
[splits.far]
role = "ood"
path = "far.jsonl"
on_empty = "skip"
label_map = { "0" = "neg", "1" = "pos" }
drop_labels = [-1]
[suites.calibration]
temperature = "grid"
metrics = ["ece@10", "nll"]
[suites.ood]
[models]
base = "models/base"
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml", data: bool = True) -> Path:
    if data:
        for f in ("dev.jsonl", "test.jsonl", "far.jsonl"):
            (tmp_path / f).write_text('{"text": "a", "label": 0}\n')
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_spec_parses_every_option(tmp_path):
    (tmp_path / "models" / "base").mkdir(parents=True)
    spec = load_spec(write(tmp_path, GOOD))
    assert (spec.name, spec.seed, spec.max_length, spec.batch_size) == ("t", 3, 32, 8)
    assert [s.role for s in spec.splits.values()] == ["dev", "test", "ood"]
    test, far = spec.splits["test"].source, spec.splits["far"].source
    assert Path(test.path) == (tmp_path / "test.jsonl").resolve()  # relative to the spec file
    assert (test.id_column, test.sample, test.seed) == ("id", 10, 3)
    assert far.on_empty == "skip" and far.label_map == {"0": "neg", "1": "pos"} and far.drop_labels == ("-1",)
    cal = spec.suites["calibration"].settings
    assert cal["temperature"] == "grid" and cal["metrics"] == ["ece@10", "nll"]
    assert cal["reliability_bins"] == 15  # default filled in
    assert spec.models["base"] == str((tmp_path / "models" / "base").resolve())
    assert len(spec.sha256) == 64


def test_default_suites_and_hub_and_package_paths(tmp_path):
    spec = load_spec(write(tmp_path, """
        [splits.test]
        role = "test"
        path = "package:aligneval/data/sentiment/movie_test.jsonl.gz"
        [splits.far]
        role = "ood"
        path = "someorg/some-dataset"
        hub_split = "validation[:50%]"
        [splits.dev]
        role = "dev"
        path = "hub:imdb"
    """))
    assert list(spec.suites) == ["accuracy", "calibration", "uncertainty", "ood"]
    assert Path(spec.splits["test"].source.path).is_file()
    assert spec.splits["far"].source.path == "hub:someorg/some-dataset"
    assert spec.splits["dev"].source.path == "hub:imdb"


@pytest.mark.parametrize("name", ["snli-mnli", "qqp-twitterppdb", "example-local"])
def test_shipped_specs_validate(name):
    spec = load_spec(name, check_files=False)
    assert spec.name == name and spec.splits_with_role("test")


def test_shipped_nli_label_maps_match_documented_labels():
    """stanfordnlp/snli and glue/mnli: ClassLabel names [entailment, neutral, contradiction]; glue/qqp:
    [not_duplicate, duplicate]; SNLI marks pairs without gold label with -1."""
    nli = load_spec("snli-mnli", check_files=False)
    for split in nli.splits.values():
        assert split.source.label_map == {"0": "entailment", "1": "neutral", "2": "contradiction"}
        assert split.source.text_pair_column == "hypothesis"
    assert nli.splits["dev"].source.drop_labels == ("-1",)
    qqp = load_spec("qqp-twitterppdb", check_files=False)
    for split in qqp.splits.values():
        assert split.source.label_map == {"0": "not_duplicate", "1": "duplicate"}


def test_builtin_lookup():
    assert "snli-mnli" in builtin_specs()
    with pytest.raises(UsageError, match="did you mean 'snli-mnli'"):
        resolve_spec_path("snli-mnl")
    with pytest.raises(UsageError, match="spec file not found"):
        resolve_spec_path("nowhere/x.toml")


BAD = [
    ("malformed", 'name = "x"\n[splits.test]\nrole = = "test"\n', UsageError, r"malformed TOML: .*line 3"),
    ("top typo", GOOD.replace("max_length", "max_lenght"), UsageError, r"unknown key 'max_lenght' \(did you mean 'max_length'\?\)"),
    ("split typo", GOOD.replace('id_column = "id"', 'id_colum = "id"'), UsageError,
     r"\[splits.test\] unknown key 'id_colum' \(did you mean 'id_column'\?\)"),
    ("bad role", GOOD.replace('role = "ood"', 'role = "oood"'), UsageError, r"\[splits.far\] role: 'oood'.*did you mean 'ood'"),
    ("wrong type", GOOD.replace("sample = 10", 'sample = "10"'), UsageError, r"\[splits.test\] sample: expected an integer"),
    ("bad on_empty", GOOD.replace('on_empty = "skip"', 'on_empty = "drop"'), UsageError, r"\[splits.far\] on_empty"),
    ("unknown suite", GOOD.replace("[suites.ood]", "[suites.calibraton]"), UsageError,
     r"\[suites.calibraton\]: unknown suite 'calibraton' \(did you mean 'calibration'\?\)"),
    ("unknown setting", GOOD.replace('temperature = "grid"', 'temprature = "grid"'), UsageError,
     r"\[suites.calibration\] unknown setting 'temprature' \(did you mean 'temperature'\?\)"),
    ("setting type", GOOD.replace('temperature = "grid"', "temperature = 2"), UsageError,
     r"\[suites.calibration\] temperature: expected a string"),
    ("unknown metric", GOOD.replace('"ece@10", "nll"', '"ece@10", "nlll"'), UsageError,
     r"\[suites.calibration\] unknown metric 'nlll' \(did you mean 'nll'\?\)"),
    ("bad bins", GOOD.replace('"ece@10"', '"ece@ten"'), UsageError, r"\[suites.calibration\].*bin count"),
    ("missing file", GOOD.replace('path = "far.jsonl"', 'path = "gone.jsonl"'), ArtifactError,
     r"\[splits.far\] path: data file not found: .*gone.jsonl"),
    ("no dev for temperature", GOOD.replace('role = "dev"', 'role = "test"\nid_column = "x"'), UsageError,
     r"\[suites.calibration\] temperature: .*role 'dev'"),
    ("two devs", GOOD.replace('role = "test"', 'role = "dev"'), UsageError, r"role 'dev'"),
    ("missing path", GOOD.replace('path = "dev.jsonl"', ""), UsageError, r"\[splits.dev\]: missing key 'path'"),
    ("ood suite without ood", GOOD.replace('role = "ood"', 'role = "test"').replace("[suites.calibration]", "[suites.accuracy]")
     .replace('temperature = "grid"\nmetrics = ["ece@10", "nll"]', ""), UsageError, r"\[suites.ood\].*role 'ood'"),
]


@pytest.mark.parametrize("label,text,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_name_file_and_key(tmp_path, label, text, exc, pattern):
    path = write(tmp_path, text)
    with pytest.raises(exc, match=pattern) as info:
        load_spec(path)
    message = info.value.message
    assert str(path) in message and "\n" not in message


def test_cli_validate_exit_codes(tmp_path, capsys):
    good = write(tmp_path, GOOD)
    assert main(["suites", "validate", str(good)]) == 0
    assert "ok:" in capsys.readouterr().out
    bad = write(tmp_path, 'name = "x"\n[splits.test]\nrole = = "test"\n', name="bad.toml")
    assert main(["suites", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 3" in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_list_and_show(capsys):
    assert main(["suites", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("accuracy", "calibration", "ood", "uncertainty", "snli-mnli", "example-local"):
        assert name in out
    assert main(["suites", "show", "calibration"]) == 0
    out = capsys.readouterr().out
    assert 'temperature = "bounded"' in out and "ece@15" in out
    assert main(["suites", "show", "snli-mnli"]) == 0
    assert "role ood" in capsys.readouterr().out
    assert main(["suites", "show", "calibraton"]) == 2
    assert "did you mean 'calibration'" in capsys.readouterr().err


def test_third_party_suite_via_entry_point(tmp_path, monkeypatch):
    """A plugin registers through the `aligneval.suites` entry-point group, loaded lazily on first lookup."""
    import importlib.metadata as md

    import aligneval.suites as suites_pkg
    from aligneval import plugins
    from aligneval.suites.base import SUITES

    (tmp_path / "my_ae_plugin.py").write_text(textwrap.dedent('''
        from aligneval.records import SuiteOutput
        from aligneval.suites.base import register_suite

        @register_suite("my-suite", "counts examples", {"scale": 1.0})
        def my_suite(ctx, settings):
            return SuiteOutput()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = md.EntryPoint(name="my-suite", value="my_ae_plugin", group="aligneval.suites")
    real = md.entry_points
    monkeypatch.setattr(md, "entry_points", lambda **kw: [ep] if kw.get("group") == "aligneval.suites" else real(**kw))
    monkeypatch.setattr(suites_pkg, "_loaded", False)
    monkeypatch.setattr(plugins, "_loaded", False)
    try:
        assert "my-suite" in suites_pkg.suite_names()
        spec = load_spec(write(tmp_path, GOOD.replace("[suites.ood]", "[suites.my-suite]\nscale = 2")))
        assert spec.suites["my-suite"].settings == {"scale": 2}
    finally:
        SUITES._items.pop("my-suite", None)
