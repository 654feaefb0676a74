"""Scale-out pieces that run in one process: validation of --device / --mixed-precision /
--num-processes (one line, exit 2), sharding that gives every rank whole batches of the one-process
plan, the accelerate factory for training, device placement checked on the `meta` device, the
prediction cache under concurrent writers, the attack log's consolidation of rank parts, and `env`.
The multi-process runs themselves are in test_distributed_launch.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aligneval import distributed, predict
from aligneval.attack import checkpoint
from aligneval.cli import main
from aligneval.errors import UsageError
from tests.tiny import make_tiny_model, make_tiny_pair, sentences

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNEVAL_CACHE", str(tmp_path / "cache"))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    distributed._reset_for_tests()
    yield
    distributed._reset_for_tests()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("dist-model"), seed=3)


# ---------------------------------------------------------------- validation

def test_device_names_are_checked():
    assert distributed.check_device(None) == "auto"
    assert distributed.check_device("CPU") == "cpu"
    with pytest.raises(UsageError, match=r"unknown --device 'tpu'.*choose one of auto, cpu, cuda, mps") as err:
        distributed.check_device("tpu")
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match=r"did you mean 'cuda'"):
        distributed.check_device("gpu")
    with pytest.raises(UsageError, match="CUDA_VISIBLE_DEVICES"):
        distributed.check_device("cuda:1")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            distributed.check_device("cuda")
        assert distributed.state().device() in ("cpu", "mps")


def test_mixed_precision_is_checked_against_the_device():
    assert distributed.check_mixed_precision(None, "cpu") == "no"
    assert distributed.check_mixed_precision("BF16", "cpu") == "bf16"
    assert distributed.check_mixed_precision("fp16", "cuda:0") == "fp16"
    with pytest.raises(UsageError, match="fp16 needs a GPU, and this run is on cpu") as err:
        distributed.check_mixed_precision("fp16", "cpu")
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="did you mean 'bf16'"):
        distributed.check_mixed_precision("bf61", "cpu")


def test_num_processes_is_checked(monkeypatch):
    assert distributed.check_num_processes(None) is None
    assert distributed.check_num_processes(3) == 3
    for bad in (0, -2):
        with pytest.raises(UsageError, match=f"at least 1, not {bad}"):
            distributed.check_num_processes(bad)
    monkeypatch.setenv("WORLD_SIZE", "2")  # already under a launcher with 2 processes
    assert distributed.check_num_processes(2) == 2 and distributed.maybe_relaunch(2) is None
    with pytest.raises(UsageError, match="already runs under a launcher with 2 processes"):
        distributed.check_num_processes(4)


def test_launch_arguments_strip_the_shortcut():
    argv = ["run", "spec.toml", "--num-processes", "2", "--model", "a=x", "--num-processes=3", "--out", "o"]
    assert distributed.strip_option(argv, "--num-processes") == ["run", "spec.toml", "--model", "a=x", "--out", "o"]
    args = distributed.launch_args(argv, 2, port=29999)
    assert args[:2] == ["--multi_gpu", "--num_processes"] and args[2] == "2"
    assert args[args.index("--main_process_port") + 1] == "29999"
    assert args[args.index("-m"):] == ["-m", "aligneval", "run", "spec.toml", "--model", "a=x", "--out", "o"]
    # accelerate's own parser accepts them, as one process or as a data-parallel launch
    from accelerate.commands.launch import launch_command_parser

    parsed = launch_command_parser().parse_args(args)
    assert parsed.num_processes == 2 and parsed.module and parsed.training_script == "aligneval"
    assert parsed.training_script_args == ["run", "spec.toml", "--model", "a=x", "--out", "o"]


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_main_process_hands_its_error_line_to_the_launcher(tmp_path, monkeypatch, capsys):
    """Under `relaunch`, the main process's one error line goes to the launcher's file (printed once,
    by the launcher), not to stderr; another rank, or no relaunch, prints as before."""
    from aligneval.cli import _fail

    report = tmp_path / "error"
    monkeypatch.setenv(distributed.REPORT_ENV, str(report))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _fail("no spec\nhere", 2) == 2
    assert capsys.readouterr().err == "error: no spec here\n" and not report.exists()  # rank 1: as before
    monkeypatch.setenv("RANK", "0")
    assert _fail("no spec\nhere", 4) == 4
    assert capsys.readouterr().err == ""
    assert report.read_text(encoding="utf-8") == "4\nerror: no spec here"
    assert distributed._handed_error(str(report)) == (4, "error: no spec here")
    assert distributed._handed_error(str(tmp_path / "absent")) is None
    monkeypatch.delenv(distributed.REPORT_ENV)
    assert _fail("no spec", 2) == 2
    assert capsys.readouterr().err == "error: no spec\n"  # no relaunch: the process prints it


def test_bad_scale_out_input_is_one_line_exit_2(tmp_path, capsys):
    from tests.tiny_eval import write_eval_fixture

    models = make_tiny_pair(tmp_path / "m")
    spec = write_eval_fixture(tmp_path / "data", n=12)
    base = ["run", str(spec), "--model", f"baseline={models['baseline']}", "--out", str(tmp_path / "run")]
    assert main(base + ["--num-processes", "0"]) == 2
    assert "--num-processes must be at least 1, not 0" in _one_error_line(capsys)
    assert main(base + ["--device", "tpu"]) == 2
    assert "unknown --device 'tpu'" in _one_error_line(capsys)
    data = tmp_path / "data" / "test.jsonl"
    attack = ["attack", "--model", f"m={models['baseline']}", "--data", str(data), "--out", str(tmp_path / "att")]
    assert main(attack + ["-n", "3", "--num-processes", "5"]) == 2
    assert "--num-processes 5 is more than the 3 examples" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "att").exists()  # refused before any work

    # more processes than examples when already launched: a job of 40 ranks on 12-example splits
    distributed._STATE = distributed.Runtime(rank=0, world_size=40)
    assert main(base) == 2
    assert "40 processes for 12 examples in the smallest split" in _one_error_line(capsys)
    assert not (tmp_path / "run" / "predictions").exists()


def test_mixed_precision_fp16_on_cpu_refused_by_the_training_factory():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError, match="fp16 needs a GPU"):
        distributed.make_accelerator("cpu", "fp16")
    with pytest.raises(UsageError, match="--grad-accum must be a positive integer"):
        distributed.make_accelerator("cpu", "no", gradient_accumulation_steps=0)


def test_accelerator_factory_accumulates_like_a_manual_step():
    """Two micro-batches through the factory's Accelerator (gradient accumulation 2) make the same
    update as one manual SGD step on the mean of the two losses."""
    import torch

    from tests.tiny import tiny_model

    batches = [torch.tensor([[2, 7, 9, 3], [2, 11, 5, 3]]), torch.tensor([[2, 4, 8, 3], [2, 6, 6, 3]])]
    labels = [torch.tensor([0, 1]), torch.tensor([1, 1])]

    manual = tiny_model(seed=4)
    manual.train()
    torch.manual_seed(0)
    opt = torch.optim.SGD(manual.parameters(), lr=0.1)
    loss = sum(manual(input_ids=b, labels=y).loss for b, y in zip(batches, labels)) / 2
    loss.backward()
    opt.step()

    acc = distributed.make_accelerator("cpu", "no", gradient_accumulation_steps=2)
    assert acc.device.type == "cpu" and acc.gradient_accumulation_steps == 2 and acc.mixed_precision == "no"
    model = tiny_model(seed=4)
    model.train()
    torch.manual_seed(0)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt2 = acc.prepare(model, opt2)
    for b, y in zip(batches, labels):
        with acc.accumulate(model):
            acc.backward(model(input_ids=b.to(acc.device), labels=y.to(acc.device)).loss)
            opt2.step()
            opt2.zero_grad()
    for (name, p), q in zip(manual.named_parameters(), acc.unwrap_model(model).parameters()):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-5, atol=1e-6, msg=name)


# ---------------------------------------------------------------- sharding

def test_deal_and_shards_cover_every_item_once():
    items = list(range(23))
    for world in (1, 2, 3, 7):
        shares = [distributed.deal(items, r, world) for r in range(world)]
        assert sorted(x for s in shares for x in s) == items
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        epoch = [distributed.epoch_shard(items, r, world) for r in range(world)]
        assert len({len(s) for s in epoch}) == 1  # the same number of steps on every rank
        assert sorted(x for s in epoch for x in s) == items[: len(items) - len(items) % world]
    with pytest.raises(ValueError):
        distributed.deal(items, 2, 2)


def test_sharded_prediction_runs_the_one_process_batches(model_dir, monkeypatch):
    """Each rank runs whole batches of the one-process plan, so the assembled probabilities are
    bit-identical to one process's, and together the ranks run exactly its batches."""
    hf_model, tok = predict.load_model(model_dir)
    texts = [t for t, _ in sentences(37, seed=9)]
    seen: list[bytes] = []
    real = predict.forward

    def recording(model, batch):
        seen.append(batch["input_ids"].numpy().tobytes())
        return real(model, batch)

    monkeypatch.setattr(predict, "forward", recording)
    whole = predict.predict_probs(hf_model, tok, texts, max_length=16, batch_size=5, progress=False)
    one_process, seen[:] = list(seen), []
    parts = [predict.predict_shard(hf_model, tok, texts, max_length=16, batch_size=5, progress=False,
                                   rank=r, world_size=3) for r in range(3)]
    assert sorted(seen) == sorted(one_process)
    # the one-process batches dealt round-robin: batches 0,3,6,... | 1,4,7,... | 2,5,8,...
    lengths = np.array([len(ids) for ids in tok(texts, truncation=True, max_length=16)["input_ids"]])
    plan = predict.batch_plan(lengths, 5)
    assert len(plan) >= 3
    assert [len(r) for r, _ in parts] == [sum(len(b) for b in plan[rank::3]) for rank in range(3)]
    np.testing.assert_array_equal(predict.assemble(parts, len(texts)), whole)
    with pytest.raises(RuntimeError, match="cover"):
        predict.assemble(parts[:2], len(texts))


def test_prediction_tensors_follow_the_models_device(model_dir, monkeypatch):
    """On the `meta` device a tensor created on the CPU by mistake would show up here: every input
    predict builds must land on the model's device (the model itself cannot run on meta, so the seam
    answers with CPU logits, as the real `.cpu()` copy would)."""
    import torch

    hf_model, tok = predict.load_model(model_dir)
    hf_model.to("meta")
    devices = []

    def on_meta(model, batch):
        devices.extend(v.device.type for v in batch.values())
        return torch.zeros(batch["input_ids"].shape[0], model.config.num_labels)

    monkeypatch.setattr(predict, "forward", on_meta)
    probs = predict.predict_probs(hf_model, tok, ["a good film", "dull", "the plot was weak"], batch_size=2,
                                  progress=False)
    assert devices and set(devices) == {"meta"}
    np.testing.assert_allclose(probs, 0.5)


def test_attack_wrapper_tensors_follow_the_models_device(model_dir):
    import torch
    from transformers import AutoTokenizer

    from aligneval.attack.wrapper import BatchedClassifier

    class MetaModel(torch.nn.Module):
        """Parameters on meta; records where its inputs are and answers with CPU logits."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2, device="meta"))
            self.devices: list[str] = []

        def forward(self, **inputs):
            self.devices += [v.device.type for v in inputs.values()]
            return type("Out", (), {"logits": torch.zeros(inputs["input_ids"].shape[0], 2)})()

    model = MetaModel()
    clf = BatchedClassifier(model, AutoTokenizer.from_pretrained(model_dir), max_length=16, batch_size=2)
    assert clf(["a good film", "dull", "the plot was weak"]).shape == (3, 2)
    assert model.devices and set(model.devices) == {"meta"}


def test_models_load_on_the_requested_device(model_dir):
    from aligneval.attack.wrapper import load_classifier

    distributed.configure("cpu")
    hf_model, _ = predict.load_model(model_dir)
    attack_model, _ = load_classifier(model_dir)
    assert {p.device.type for p in hf_model.parameters()} == {"cpu"}
    assert {p.device.type for p in attack_model.parameters()} == {"cpu"}


# ---------------------------------------------------------------- the cache under concurrency

def _writer(path: str, value: float, rounds: int) -> None:
    from aligneval.suites.base import Predictions

    n = 3000
    preds = Predictions(ids=[f"e{i}" for i in range(n)], labels=np.zeros(n, dtype=np.int64),
                        probs=np.full((n, 2), value), texts=["x" * 40] * n)
    for _ in range(rounds):
        predict.write_predictions(Path(path), preds, ["h"] * n, {"key": "k", "writer": value})


def test_cache_entry_is_never_read_half_written(tmp_path):
    """Two processes keep replacing the same cache entry while this one reads it: every read sees a
    complete file from one writer (temp file + fsync + rename), never a mix or a torn file."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    path = tmp_path / "cache" / "entry.parquet"
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(str(path), v, 25)) for v in (0.25, 0.75)]
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers) or reads == 0:
        if path.exists():
            preds, meta = predict.read_predictions(path)
            assert preds.n == 3000 and len(set(preds.probs.ravel())) == 1
            assert preds.probs[0, 0] == meta["writer"]
            reads += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert reads > 0
    assert [p.name for p in path.parent.iterdir()] == ["entry.parquet"]  # no temp file left behind


# ---------------------------------------------------------------- attack logs of several ranks

def test_consolidate_folds_rank_parts_in_example_order(tmp_path):
    log = tmp_path / "attacks" / "m" / "pruthi.jsonl"
    header = checkpoint.make_header(recipe="pruthi", seed=0)
    order = ["a", "b", "c", "d", "e", "f"]
    with checkpoint.Appender(log, header) as out:
        out.write({"id": "b", "outcome": "failed"})
    with open(log, "a") as fh:
        fh.write('{"kind": "result", "id": "f", "outc')  # killed mid-line
    with checkpoint.Appender(checkpoint.part_path(log, 1), header) as out:
        out.write({"id": "e", "outcome": "succeeded"})
        out.write({"id": "b", "outcome": "failed"})  # already in the main log: kept once
    with checkpoint.Appender(checkpoint.part_path(log, 0), header) as out:
        out.write({"id": "d", "outcome": "skipped"})
        out.write({"id": "a", "outcome": "failed"})
    with open(checkpoint.part_path(log, 0), "a") as fh:
        fh.write('{"kind": "result", "id": "c"')  # cut: redone later
    (log.parent / "pruthi.rank7.jsonl.stale").write_text("old\n")  # not a part
    assert [p.name for p in checkpoint.part_paths(log)] == ["pruthi.rank0.jsonl", "pruthi.rank1.jsonl"]

    rows, state = checkpoint.consolidate(log, header, order)
    assert state == "resumed" and sorted(rows) == ["a", "b", "d", "e"]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0] == header and [r["id"] for r in lines[1:]] == ["b", "a", "d", "e"]  # old rows first
    assert checkpoint.part_paths(log) == []
    assert checkpoint.consolidate(log, header, order) == (rows, "resumed")  # idempotent
    # rows sent over the process group by a rank whose disk the main process cannot see
    rows, _ = checkpoint.consolidate(log, header, order, [{"id": "c", "outcome": "failed"}, {"id": "a", "x": 1}])
    assert [json.loads(x)["id"] for x in log.read_text().splitlines()[1:]] == ["b", "a", "d", "e", "c"]
    assert rows["a"]["outcome"] == "failed" and "x" not in rows["a"]  # a finished row is never replaced

    # a part made with other settings is set aside, as the main log would be
    with checkpoint.Appender(checkpoint.part_path(log, 0), dict(header, seed=9)) as out:
        out.write({"id": "f", "outcome": "failed"})
    rows, state = checkpoint.consolidate(log, header, order)
    assert state == "stale" and "f" not in rows
    assert (log.parent / "pruthi.rank0.jsonl.stale").exists()


# ---------------------------------------------------------------- env

def test_env_reports_device_processes_versions_and_recipes(capsys):
    from importlib.metadata import version

    import torch

    from aligneval.attack import recipes
    from aligneval.versions import cpu_description

    recipes.network_available.cache_clear()
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    expected = "cuda:0" if torch.cuda.is_available() else ("mps" if distributed._mps_available() else "cpu")
    assert info["device"]["resolved"] == expected and info["device"]["request"] == "auto"
    assert info["processes"]["world_size"] == 1
    assert info["threads"]["torch"] == torch.get_num_threads()
    assert info["packages"]["accelerate"] == version("accelerate")
    assert info["packages"]["torch"] == version("torch")
    assert info["cpu"] == cpu_description()
    assert info["recipes"]["deepwordbug"] is None
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert info["recipes"]["textfooler"].startswith("textfooler needs the network")
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert "processes" in text and "deepwordbug" in text and f"accelerate {version('accelerate')}" in text
    assert main(["env", "--device", "tpu"]) == 2


def test_cli_modules_import_neither_torch_nor_accelerate():
    code = ("import sys, aligneval.cli, aligneval.distributed, aligneval.commands.env; aligneval.cli.build_app(); "
            "print([m for m in ('torch', 'accelerate', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
