"""The shared data module: every local format reads to the same examples; bad data fails with one line."""

import json

import numpy as np
import pandas as pd
import pytest

from aligneval.data import DataSource, encode_labels, is_local, load_examples, require_classes
from aligneval.errors import ArtifactError, DataError, ResourceError
from tests.scripts import load_script

ROWS = [
    {"id": "a", "sentence": "a fine film", "label": "pos"},
    {"id": "b", "sentence": "a dull film", "label": "neg"},
    {"id": "c", "sentence": "quite good", "label": "pos"},
]


def write(tmp_path, fmt, rows=ROWS):
    frame = pd.DataFrame(rows)
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "saved":
        import datasets

        datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "saved"])
def test_every_format_gives_the_same_examples(tmp_path, fmt):
    ex = load_examples(DataSource(str(write(tmp_path, fmt)), text_column="sentence", id_column="id"))
    assert ex.ids == ["a", "b", "c"]
    assert ex.texts == ["a fine film", "a dull film", "quite good"]
    assert ex.label_names == ["neg", "pos"]  # stable (sorted) order for string labels
    assert ex.labels.tolist() == [1, 0, 1]
    reference = load_examples(DataSource(str(write(tmp_path, "jsonl")), text_column="sentence", id_column="id"))
    assert ex.fingerprint == reference.fingerprint


def test_label_names_from_the_model_fix_the_order(tmp_path):
    ex = load_examples(DataSource(str(write(tmp_path, "jsonl")), text_column="sentence"), ["pos", "neg"])
    assert ex.labels.tolist() == [0, 1, 0]
    assert ex.ids == ["0", "1", "2"]  # row numbers when there is no id column


def test_label_map_and_mismatch():
    ids, names = encode_labels(["p", "n"], ["negative", "positive"], {"p": "positive", "n": "negative"})
    assert ids.tolist() == [1, 0] and names == ["negative", "positive"]
    with pytest.raises(DataError, match=r"do not match the model's label set \['negative', 'positive'\]"):
        encode_labels(["p", "n"], ["negative", "positive"])
    with pytest.raises(DataError, match="outside the model's label set"):
        encode_labels([0, 1, 2], ["a", "b"])
    ints, names = encode_labels([0, 2, 1])
    assert ints.tolist() == [0, 2, 1] and names == ["0", "1", "2"]


def test_missing_column_suggests_the_near_miss(tmp_path):
    with pytest.raises(DataError, match="no column 'sentense' \\(did you mean 'sentence'\\?\\)"):
        load_examples(DataSource(str(write(tmp_path, "csv")), text_column="sentense"))


def test_missing_file_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="data file not found"):
        load_examples(DataSource(str(tmp_path / "nope.csv")))


def test_empty_texts_rejected_or_skipped(tmp_path):
    rows = ROWS + [{"id": "d", "sentence": "", "label": "neg"}, {"id": "e", "sentence": None, "label": "pos"}]
    path = write(tmp_path, "jsonl", rows)
    with pytest.raises(DataError, match="2 null or empty text"):
        load_examples(DataSource(str(path), text_column="sentence", id_column="id"))
    ex = load_examples(DataSource(str(path), text_column="sentence", id_column="id", on_empty="skip"))
    assert ex.ids == ["a", "b", "c"] and ex.skipped == 2


def test_duplicate_ids_and_empty_split(tmp_path):
    with pytest.raises(DataError, match=r"duplicate id\(s\) \['a'\]"):
        load_examples(DataSource(str(write(tmp_path, "jsonl", ROWS + [ROWS[0]])), text_column="sentence",
                                 id_column="id"))
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n")
    with pytest.raises(DataError, match="empty"):
        load_examples(DataSource(str(empty), text_column="sentence"))


EMPTY_OR_CORRUPT = [
    # parses in its format but holds no rows: unusable data (exit 4), whatever the format
    ("zero.csv", b"", DataError, r"zero\.csv: the split is empty \(no rows, no columns\)"),
    ("blank.csv", b"\n\n", DataError, r"blank\.csv: the split is empty"),
    ("header.csv", b"text,label\n", DataError, r"header\.csv: the split is empty \(no rows\)"),
    ("header.tsv", b"text\tlabel\n", DataError, r"header\.tsv: the split is empty"),
    ("zero.jsonl", b"", DataError, r"zero\.jsonl: the split is empty"),
    ("list.json", b"[]", DataError, r"list\.json: the split is empty"),
    # does not parse as its format at all: a corrupt artifact (exit 3)
    ("zero.json", b"", ArtifactError, r"cannot read .*zero\.json"),
    ("zero.parquet", b"", ArtifactError, r"cannot read .*zero\.parquet"),
    ("torn.jsonl", b'{"text": "good", "lab', ArtifactError, r"cannot read .*torn\.jsonl"),
]


@pytest.mark.parametrize("name,content,error,message", EMPTY_OR_CORRUPT, ids=[c[0] for c in EMPTY_OR_CORRUPT])
def test_empty_is_unusable_data_and_unparseable_is_corrupt(tmp_path, name, content, error, message):
    """The rule (docs/footguns.md): a 0-byte CSV and a header-only CSV are both valid CSV with no rows,
    so both are exit 4; only a file that its format cannot read at all is exit 3."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=message) as info:
        load_examples(DataSource(str(path)))
    assert info.value.exit_code == (4 if error is DataError else 3)


def test_one_class_is_refused_for_training(tmp_path):
    ex = load_examples(DataSource(str(write(tmp_path, "jsonl", [r for r in ROWS if r["label"] == "pos"])),
                                  text_column="sentence"))
    with pytest.raises(DataError, match="1 class"):
        require_classes(ex)


def test_sampling_is_seeded_and_keeps_order(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(50)]
    path = write(tmp_path, "jsonl", rows)
    a = load_examples(DataSource(str(path), sample=10, seed=3))
    b = load_examples(DataSource(str(path), sample=10, seed=3))
    c = load_examples(DataSource(str(path), sample=10, seed=4))
    assert a.ids == b.ids != c.ids
    assert [int(i) for i in a.ids] == sorted(int(i) for i in a.ids)
    np.testing.assert_array_equal(a.labels, [int(i) % 2 for i in a.ids])


def test_hub_ids_are_not_local_and_fail_clearly_offline(monkeypatch):
    assert is_local("data/train.csv") and is_local("./x") and not is_local("stanfordnlp/snli")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceError, match="hub"):
        load_examples(DataSource("stanfordnlp/snli", hub_split="test"))


def test_packaged_sentiment_data_matches_its_manifest():
    import hashlib
    from importlib.resources import files

    folder = files("aligneval") / "data" / "sentiment"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, info in manifest["splits"].items():
        blob = (folder / info["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == info["sha256"]
        ex = load_examples(DataSource(str(folder / info["file"]), id_column="id"))
        assert len(ex) == info["rows"]
        assert ex.label_names == ["negative", "positive"]
        assert int((ex.labels == 1).sum()) == info["labels"]["positive"]


@pytest.mark.slow
def test_packaged_data_rebuilds_byte_for_byte_from_the_source_archive(tmp_path):
    """scripts/build_demo_data.py, run on `pip download vadersentiment==3.3.2`, gives the shipped files."""
    import subprocess
    from importlib.resources import files

    builder = load_script("scripts/build_demo_data.py")
    try:
        archive = builder.fetch_archive(tmp_path / "sdist")
    except subprocess.CalledProcessError:
        pytest.skip("PyPI is not reachable, so the source archive cannot be fetched")
    builder.build(archive, tmp_path / "out")
    shipped = files("aligneval") / "data" / "sentiment"
    for name in json.loads((shipped / "manifest.json").read_text())["splits"]:
        assert (tmp_path / "out" / f"{name}.jsonl.gz").read_bytes() == (shipped / f"{name}.jsonl.gz").read_bytes()
    assert (tmp_path / "out" / "manifest.json").read_text() == (shipped / "manifest.json").read_text()
