"""The bottom layer (aligneval.artifacts): atomic writes, JSON/parquet round trips, corrupt files
named as artifacts, and the import layering it exists for."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aligneval import artifacts
from aligneval.artifacts import (Predictions, atomic_write, read_json, read_predictions, read_table,
                                 write_bytes_atomic, write_float_table, write_json_atomic, write_predictions)
from aligneval.errors import ArtifactError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _preds(n=7, k=3, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    return Predictions(ids=[f"e{i}" for i in range(n)], labels=rng.integers(0, k, n).astype(np.int64),
                       probs=probs, texts=[f"text {i} ü" for i in range(n)])


# ---------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_old_file_and_no_temp_file(tmp_path, error):
    target = tmp_path / "doc.json"
    target.write_text('{"old": true}\n', encoding="utf-8")

    def half_then_fail(fh):
        fh.write('{"new": ')  # half a document is on disk in the temp file ...
        fh.flush()
        assert _leftovers(tmp_path)  # ... under a hidden temp name, never under the target's
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, half_then_fail)
    assert target.read_text("utf-8") == '{"old": true}\n'
    assert _leftovers(tmp_path) == []


def test_json_with_nan_is_refused_and_the_old_file_stays(tmp_path):
    target = write_json_atomic(tmp_path / "sub" / "doc.json", {"a": 1})  # creates the folder
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})
    assert json.loads(target.read_text("utf-8")) == {"a": 1}
    assert _leftovers(target.parent) == []


def test_atomic_writes_replace_the_content(tmp_path):
    target = tmp_path / "b.bin"
    write_bytes_atomic(target, b"one", fsync=True)
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    write_json_atomic(tmp_path / "d.json", {"ü": [1, 2.5, None]})
    assert read_json(tmp_path / "d.json") == {"ü": [1, 2.5, None]}
    assert _leftovers(tmp_path) == []


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"bad\.json: corrupt comparison document"):
        read_json(bad, "comparison document")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(ArtifactError, match=r"latin\.json: corrupt JSON"):
        read_json(latin)
    with pytest.raises(ArtifactError, match=f"{tmp_path.name}: cannot read config"):
        read_json(tmp_path, "config")  # a folder where a file was expected


# ---------------------------------------------------------------- parquet

def test_predictions_round_trip_exactly(tmp_path):
    preds = _preds()
    meta = {"key": "abc", "label_names": ["a", "b", "c"]}
    path = tmp_path / "p" / "test.parquet"
    write_predictions(path, preds, [f"h{i}" for i in range(preds.n)], meta)
    back, back_meta = read_predictions(path)
    assert back.ids == preds.ids and back.texts == preds.texts
    assert back.labels.dtype == np.int64 and np.array_equal(back.labels, preds.labels)
    assert np.array_equal(back.probs, preds.probs)  # float64 stored, bit-exact
    assert back_meta == meta
    table, _ = read_table(path)
    assert table.column("text_sha256").to_pylist() == [f"h{i}" for i in range(preds.n)]


def test_truncated_predictions_are_a_corrupt_artifact_naming_the_file(tmp_path):
    path = tmp_path / "baseline" / "test.parquet"
    write_predictions(path, _preds(n=200), ["h"] * 200, {"key": "k"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="cannot read predictions") as info:
        read_predictions(path)
    assert str(path) in info.value.message and "\n" not in info.value.message
    with pytest.raises(ArtifactError, match="predictions not found"):
        read_predictions(tmp_path / "missing.parquet")


def test_arrow_columns_read_as_numpy_equal_pyarrows_own_conversion():
    """as_numpy reads a primitive column's buffer (no pandas import); it must equal pyarrow's own
    to_numpy for every type read, on sliced arrays (non-zero offset) and empty ones, and hand
    anything with nulls or another type to np.asarray."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    for arr in (pa.array(rng.integers(-5, 5, 50), pa.int64()), pa.array(rng.integers(0, 9, 50), pa.int32()),
                pa.array(rng.normal(size=50), pa.float64())):
        for piece in (arr, arr.slice(7, 20), arr.slice(50)):
            got = artifacts.as_numpy(piece)
            want = piece.to_numpy(zero_copy_only=False)
            assert got.dtype == want.dtype and np.array_equal(got, want)
    with_null = pa.array([1.0, None, 3.0])
    assert np.isnan(artifacts.as_numpy(with_null)[1])
    assert np.array_equal(artifacts.as_numpy(pa.array([1, 2], pa.int16())), [1, 2])


def test_reading_predictions_does_not_import_pandas(tmp_path):
    path = tmp_path / "test.parquet"
    write_predictions(path, _preds(), ["h"] * 7, {"key": "k"})
    code = ("import sys; from aligneval.artifacts import read_predictions; "
            f"p, _ = read_predictions({str(path)!r}); print(p.probs.shape, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-1] == "False", out.stderr


def test_null_probabilities_are_a_corrupt_artifact(tmp_path):
    import pyarrow as pa

    path = tmp_path / "test.parquet"
    table = pa.table({"id": ["a", "b"], "label": pa.array([0, 1], pa.int64()),
                      "probs": pa.array([[0.5, 0.5], None], pa.list_(pa.float64())), "text": ["x", "y"]})
    artifacts.write_table_atomic(path, table, {"key": "k"})
    with pytest.raises(ArtifactError, match="corrupt predictions"):
        read_predictions(path)


def test_float_table_round_trip(tmp_path):
    cols = {"kq_mmd2": np.array([0.5, -1.25, np.nan]), "kq_probe_acc": np.array([1, 0, 1])}
    path = write_float_table(tmp_path / "v.parquet", ["a", "b", "c"], cols, {"key": "k", "n_layers": 2})
    table, meta = read_table(path)
    assert meta == {"key": "k", "n_layers": 2}
    assert table.column_names == ["id", "kq_mmd2", "kq_probe_acc"]
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    got = table.column("kq_mmd2").to_numpy(zero_copy_only=False)
    assert got[0] == 0.5 and got[1] == -1.25 and np.isnan(got[2])
    assert table.column("kq_probe_acc").to_pylist() == [1.0, 0.0, 1.0]


def test_old_import_paths_are_the_same_objects():
    from aligneval import predict, results
    from aligneval.suites import base

    assert predict.read_predictions is read_predictions and predict.write_predictions is write_predictions
    assert results.write_json_atomic is write_json_atomic and results.read_json is read_json
    assert base.Predictions is Predictions and base.ModelInfo is artifacts.ModelInfo
    assert base.SplitInfo is artifacts.SplitInfo


# ---------------------------------------------------------------- layering

def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_layering_has_no_cycle():
    """results reads predictions without the predict stage or the suites; predict does not need the
    results document; the bottom layer pulls in no pyarrow until a parquet file is touched."""
    after_results = _modules_after("import aligneval.results")
    assert not {m for m in after_results if m.startswith(("aligneval.suites", "aligneval.predict"))}
    assert "aligneval.artifacts" in after_results
    after_predict = _modules_after("import aligneval.predict")
    assert "aligneval.results" not in after_predict
    after_artifacts = _modules_after("import aligneval.artifacts")
    assert {m for m in after_artifacts if m.startswith("aligneval.")} == {"aligneval.artifacts", "aligneval.errors"}
    assert "pyarrow" not in after_artifacts and "torch" not in after_artifacts
