"""Processes, ranks and devices: the one module that talks to accelerate.

aligneval scales out the way Hugging Face users already do: `accelerate launch` (torch.distributed)
starts the processes, and each process asks this module who it is (`state()`), which device it
computes on (`Runtime.device()`), which share of the work is its own (`deal`, `batch_shard`,
`epoch_shard`), and whether it is the one that writes (`Runtime.is_main`). Work is dealt so that every
example is computed exactly as in one process (same batch neighbours, same per-example seed), so the
numbers do not depend on the process count. `--num-processes N` re-executes the command under
`accelerate launch` (`relaunch`).

Nothing here imports torch or accelerate until it is needed: one process that reads everything from
the cache never pays for either. See docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

from aligneval.errors import UsageError
from aligneval.registry import did_you_mean

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("no", "fp16", "bf16")
TIMEOUT_ENV = "ALIGNEVAL_DIST_TIMEOUT_S"
# Ranks wait for each other at barriers while a slower rank finishes its share of an attack; torch's
# default (30 min) would kill long attacks, so the default is generous and the variable overrides it.
DEFAULT_TIMEOUT_S = 12 * 3600
_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")


# ---------- who am I (from the launcher's environment, no imports) ---------------------------

def _env_int(names: Sequence[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                continue
    return default


REPORT_ENV = "ALIGNEVAL_LAUNCH_REPORT"  # set by `relaunch`: the file the main process leaves its error line in


def hand_error_to_launcher(line: str, code: int) -> bool:
    """Under `relaunch` (--num-processes), the main process hands its one-line error to the launcher,
    which prints it: when every rank fails at once, the launcher may stop the main process after it
    printed and then report another rank's exit too (two lines). False (print it yourself) anywhere
    else: a single process, another rank, or a launcher of the user's own."""
    path = os.environ.get(REPORT_ENV)
    if not path or launched_world_size() < 2 or not is_main_process():
        return False
    # here, not at the top: artifacts brings numpy, which no command's start-up should pay for
    from aligneval.artifacts import write_text_atomic

    try:
        write_text_atomic(path, f"{int(code)}\n{line}")  # whole or absent, even if stopped while writing
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hand_off_file() -> Iterator[str]:
    """The file the launched processes inherit through REPORT_ENV (the main one leaves its error line
    in it); afterwards the file is removed and the variable is as it was."""
    before = os.environ.get(REPORT_ENV)
    with tempfile.TemporaryDirectory(prefix="aligneval-launch-") as folder:
        os.environ[REPORT_ENV] = report = str(Path(folder) / "error")
        try:
            yield report
        finally:
            if before is None:
                os.environ.pop(REPORT_ENV, None)
            else:
                os.environ[REPORT_ENV] = before


@contextlib.contextmanager
def _silenced(*loggers: str) -> Iterator[None]:
    """These loggers say nothing below CRITICAL while the block runs (their levels restored after)."""
    import logging  # here: only a relaunch needs it, and every command's start-up would pay ~3 ms

    quiet = [logging.getLogger(name) for name in loggers]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def _handed_error(path: str) -> tuple[int, str] | None:
    """(exit code, error line) the main process handed over, or None."""
    try:
        code, line = Path(path).read_text(encoding="utf-8").split("\n", 1)
        return int(code), line
    except (OSError, ValueError):
        return None


def launched_world_size() -> int:
    """The process count a launcher (accelerate launch, torchrun, mpirun, Slurm's srun) announced; 1 if none."""
    return max(1, _env_int(_WORLD_VARS, 1))


def is_main_process() -> bool:
    """True in a single process and on global rank 0; cheap (environment only), usable before `state()`."""
    return _env_int(_RANK_VARS, 0) == 0


# ---------- validation of --device and --mixed-precision --------------------------------------

def check_device(name: str | None) -> str:
    """A valid `--device` value ("auto" when not given); asking for CUDA or MPS where there is none
    is a usage error, found before any work. Only cuda/mps requests import torch."""
    value = "auto" if name is None else str(name).strip().lower()
    if value not in DEVICES:
        if value.split(":")[0] in DEVICES:
            hint = " (pick the GPU with CUDA_VISIBLE_DEVICES; under a launcher each process takes its local rank's GPU)"
        else:
            hint = " (did you mean 'cuda'?)" if value in ("gpu", "nvidia") else did_you_mean(value, list(DEVICES))
        raise UsageError(f"unknown --device '{name}'{hint}; choose one of {', '.join(DEVICES)}")
    if value == "cuda" and not _cuda_available():
        raise UsageError("--device cuda: no CUDA device is visible here (torch.cuda.is_available() is False)")
    if value == "mps" and not _mps_available():
        raise UsageError("--device mps: Apple's MPS backend is not available here")
    return value


def check_mixed_precision(precision: str | None, device: str) -> str:
    """'no', 'fp16' or 'bf16', checked against the device the work will run on (a resolved device
    such as 'cpu', 'cuda:0', 'mps'). fp16 autocast needs a GPU; bf16 needs hardware support on CUDA."""
    value = "no" if precision is None else str(precision).strip().lower()
    if value not in PRECISIONS:
        raise UsageError(f"unknown --mixed-precision '{precision}'{did_you_mean(value, list(PRECISIONS))}; "
                         f"choose one of {', '.join(PRECISIONS)}")
    kind = device.split(":")[0]
    if value == "fp16" and kind not in ("cuda", "mps"):
        raise UsageError(f"--mixed-precision fp16 needs a GPU, and this run is on {kind}; "
                         "use bf16 (supported on recent CPUs) or no")
    if value == "bf16" and kind == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise UsageError("--mixed-precision bf16: this GPU does not support bfloat16; use fp16 or no")
    return value


def check_num_processes(n: int | None) -> int | None:
    """None (not given) or a positive count; under a launcher it must match the launcher's count."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"--num-processes must be at least 1, not {n}")
    world = launched_world_size()
    if world > 1 and n != world:
        raise UsageError(f"--num-processes {n}, but this command already runs under a launcher with {world} "
                         "processes; drop one of the two")
    return n


def check_shardable(count: int, what: str) -> None:
    """More processes than items would leave a process idle by construction: a usage error."""
    world = state().world_size
    if world > count:
        raise UsageError(f"{world} processes for {count} {what}: use at most {count} (--num-processes)")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


# ---------- the process state -------------------------------------------------------------------

@dataclass(frozen=True)
class Runtime:
    """This process's place in the job. Without a process group (`backend` None) the collectives are
    no-ops: one process, or a test that drives ranks one after another."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device_request: str = "auto"
    _devices: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1

    def device(self, request: str | None = None) -> str:
        """The device this process computes on: the request ('auto' picks CUDA, then MPS, then CPU);
        with several processes on CUDA each takes its local rank's GPU."""
        request = check_device(request or self.device_request)
        if request not in self._devices:
            self._devices[request] = _resolve(request, self.local_rank, self.backend)
        return self._devices[request]

    def barrier(self) -> None:
        if self.distributed:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank (accelerate's gather_object)."""
        if not self.distributed:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def broadcast(self, obj: T) -> T:
        """The main process's `obj` on every rank (accelerate's broadcast_object_list)."""
        if not self.distributed:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def all_agree(self, flag: bool) -> bool:
        """True only when `flag` is true on every rank (the same answer everywhere)."""
        return all(self.gather(bool(flag)))

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every world_size-th, starting at its rank (see `deal`)."""
        return deal(items, self.rank, self.world_size)


_STATE: Runtime | None = None


def configure(device: str | None = None) -> Runtime:
    """Set the device request of this process (from `--device`) and return the state; the request is
    validated here, before any work, and every later `state().device()` honours it. None keeps the
    request already made (auto when none was)."""
    global _STATE
    if device is None and _STATE is not None:
        return _STATE
    request = check_device(device)
    rt = state(request)
    if rt.device_request != request:
        _STATE = Runtime(rt.rank, rt.world_size, rt.local_rank, rt.backend, request)
    return _STATE


def state(device: str | None = None) -> Runtime:
    """This process's Runtime, created once. Under a launcher it initialises the process group through
    accelerate's PartialState (gloo on CPU, NCCL on CUDA); in one process it imports nothing."""
    global _STATE
    if _STATE is not None:
        return _STATE
    request = check_device(device)
    if launched_world_size() <= 1:
        _warn_single_cpu_launch()
        _STATE = Runtime(device_request=request)
        return _STATE
    from accelerate import PartialState

    # Imported after the group exists, torch.distributed.fsdp (which transformers 5 imports with its
    # models) keeps references to it that outlive destroy_process_group, so its worker threads would
    # live on into interpreter exit (see `shutdown`). Imported first, it holds none.
    import torch.distributed.fsdp  # noqa: F401

    cpu = request == "cpu" or _env_flag("ACCELERATE_USE_CPU") or not _cuda_available()
    ps = PartialState(cpu=cpu, timeout=timedelta(seconds=_timeout_s()))
    _STATE = Runtime(rank=ps.process_index, world_size=ps.num_processes, local_rank=ps.local_process_index,
                     backend=ps.backend if ps.num_processes > 1 else None, device_request=request)
    return _STATE


def _resolve(request: str, local_rank: int, backend: str | None) -> str:
    if request == "cpu":
        return "cpu"
    import torch

    if request in ("auto", "cuda") and torch.cuda.is_available() and backend != "gloo":
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    if request == "cuda":  # a gloo job that was asked for CUDA: every rank still takes its own GPU
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    if request in ("auto", "mps") and _mps_available():
        return "mps"
    return "cpu"


def _timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        return float(raw) if raw else float(DEFAULT_TIMEOUT_S)
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={raw!r}: give seconds as a number") from None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


_WARNED = False


def _warn_single_cpu_launch() -> None:
    """`accelerate launch --cpu --num_processes N` without mpirun starts ONE process (accelerate 1.x's
    simple launcher): say so instead of letting a user believe N processes ran."""
    global _WARNED
    if _WARNED or not _env_flag("ACCELERATE_USE_CPU") or not os.environ.get("MASTER_PORT"):
        return
    _WARNED = True
    print("aligneval: `accelerate launch --cpu --num_processes N` started one process (without mpirun it "
          "does not start more); use `accelerate launch --multi_gpu --num_processes N` (torchrun, gloo on "
          "CPU) or `--num-processes N`", file=sys.stderr)


def shutdown() -> None:
    """Destroy the process group while the interpreter is still whole. Left to interpreter exit, a gloo
    worker thread can drop its last collective's tensors after Python has started finalizing; taking
    the GIL then kills the rank with SIGABRT ("terminate called without an active exception") after its
    work is done, and the launch fails (pytorch/pytorch#190489)."""
    if _STATE is None or not _STATE.distributed:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()  # the group's last Python references go now, and its worker threads are joined


def _reset_for_tests() -> None:
    global _STATE
    _STATE = None


# ---------- sharding that keeps per-example results independent of the process count ------------

def deal(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Items rank, rank + W, rank + 2W, ...: round-robin, so a list sorted by cost is shared evenly,
    and the same list gives every rank the same answer about who owns what."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return list(items[rank::world_size])


def batch_shard(batches: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Whole batches of the one-process plan, dealt round-robin: each example keeps its batch
    neighbours (same padding, same kernels), so a prediction is the same in any process count."""
    return deal(batches, rank, world_size)


def epoch_shard(batches: Sequence[T], rank: int, world_size: int) -> list[T]:
    """A training epoch's share for data-parallel steps: the seeded, global batch order (the same list
    on every rank and for both twins) dealt round-robin, the tail cut so every rank takes the same
    number of steps (DDP needs it). The cut batches (fewer than `world_size`) are the same on every run."""
    usable = len(batches) - len(batches) % world_size
    return deal(batches[:usable], rank, world_size)


# ---------- accelerate for training (align) -----------------------------------------------------

def make_accelerator(device: str | None = None, mixed_precision: str | None = "no",
                     gradient_accumulation_steps: int = 1, **kwargs: Any):
    """An `accelerate.Accelerator` honouring `--device`, `--mixed-precision` and gradient accumulation,
    on the process group `state()` set up. Bad values are usage errors before any work."""
    if not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 1:
        raise UsageError(f"--grad-accum must be a positive integer, not {gradient_accumulation_steps}")
    rt = state(device)
    target = rt.device(device)
    precision = check_mixed_precision(mixed_precision, target)
    from accelerate import Accelerator

    return Accelerator(cpu=target == "cpu", mixed_precision=precision,
                       gradient_accumulation_steps=gradient_accumulation_steps, **kwargs)


# ---------- --num-processes: re-execute under accelerate launch ----------------------------------

def free_port() -> int:
    """A TCP port free right now on this machine (accelerate's default 29500 collides between jobs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def strip_option(argv: Sequence[str], option: str) -> list[str]:
    """argv without `option VALUE` / `option=VALUE` (the launched processes must not launch again)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            continue
        if arg.startswith(option + "="):
            continue
        out.append(arg)
    return out


def launch_args(argv: Sequence[str], num_processes: int, device: str | None = None,
                port: int | None = None) -> list[str]:
    """`accelerate launch` arguments that run `python -m aligneval <argv>` in `num_processes` processes.

    accelerate's `--cpu` launcher starts one process unless mpirun is installed, so the torchrun-based
    launcher (`--multi_gpu`) is used on every machine; on a machine without GPUs (or with --device cpu)
    each process then joins a gloo group on the CPU (see `state`)."""
    return ["--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port or free_port()),
            "-m", "aligneval", *strip_option(argv, "--num-processes")]


_ARGV: list[str] = []


def remember_argv(argv: Sequence[str] | None) -> None:
    """The CLI records its own arguments here, so a command can re-execute itself (`maybe_relaunch`)."""
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)


def maybe_relaunch(num_processes: int | None, device: str | None = None) -> int | None:
    """`--num-processes N`: None means carry on in this process (not given, 1, or already launched);
    otherwise the command ran in N processes under `accelerate launch` and this is its exit code."""
    n = check_num_processes(num_processes)
    device = check_device(device)
    if n is None or n == 1 or launched_world_size() > 1:
        return None
    if not _ARGV:
        raise UsageError("--num-processes works from the command line; from Python, use `accelerate launch`")
    return relaunch(_ARGV, n, device)


def relaunch(argv: Sequence[str], num_processes: int, device: str | None = None) -> int:
    """Run this command again in `num_processes` processes under `accelerate launch` and return the
    main process's exit code. The launcher's own failure report is silenced: the main process hands
    its one-line error over (`hand_error_to_launcher`) and it is printed here, once."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    on_cpu = device == "cpu" or not _cuda_available()
    if on_cpu and "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of oversubscribing them
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_processes))
    args = launch_command_parser().parse_args(launch_args(argv, num_processes, device))
    with _silenced("torch.distributed.elastic", "torch.distributed.run", "accelerate.commands.launch"), \
            _hand_off_file() as report:
        try:
            launch_command(args)
        except ChildFailedError as err:
            handed = _handed_error(report)
            if handed is not None:  # the main process's own error: printed once, here
                print(handed[1], file=sys.stderr)
                return handed[0]
            rank, code = _exit_code_of(err.failures)
            if rank != 0:  # the main process says its own failures; one of another rank alone is said here
                print(f"error: process {rank} of {num_processes} stopped with exit code {code}", file=sys.stderr)
            return code
        except SignalException as err:  # Ctrl-C or a kill reached the launcher; the processes were stopped
            return 128 + int(err.sigval)
    return 0


def _exit_code_of(failures: dict) -> tuple[int, int]:
    """(rank, exit code): the main process's when it failed on its own, else the first failure's; a
    process killed by a signal gives 128 + the signal number, as a shell would."""
    ranked = sorted(failures.items())
    chosen = next(((rank, f) for rank, f in ranked if rank == 0 and f.exitcode > 0), None)
    rank, failure = chosen or min(ranked, key=lambda item: getattr(item[1], "timestamp", 0))
    code = int(failure.exitcode)
    return rank, (code if code >= 0 else 128 - code)
