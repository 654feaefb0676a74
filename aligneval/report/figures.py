"""Rendering a report's figures, in worker processes beside the assembly of the report where that pays.

Drawing is most of a report's time (the demo's report, 18 figures: 5.5-6.2 s in one process, 2.8-3.3 s
with two workers on 2 cores) and Agg holds the GIL, so threads do not help; processes do. Inside `rendering()`, `submit` hands each unplotted display to a
pool of forked workers, which import matplotlib while this process assembles the tables, and the
report waits for a figure only when it writes it. The workers are forked, so they start with
everything already imported; that is only safe and cheap on Linux (macOS forbids fork with its system
frameworks, and a spawned worker imports aligneval and matplotlib again: ~2 s). Elsewhere, with one
CPU, or with ALIGNEVAL_FIGURE_WORKERS=0, every figure is drawn here, as before. Both ways draw with
the same code and settings: the PNG bytes are the same (tests/test_report_figures.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterator

from aligneval.errors import UsageError
from aligneval.report.canvas import figure_png, styled_matplotlib

WORKERS_ENV = "ALIGNEVAL_FIGURE_WORKERS"
MAX_WORKERS = 4  # beyond this a report's figures are too few to keep more workers busy


def render(display: Any, options: dict[str, Any]) -> bytes:
    """Plot an unplotted display and return its PNG bytes: the one drawing path, here or in a worker."""
    return figure_png(display.plot(**options))


class PendingFigure:
    """A figure being drawn by a worker; drawn here instead if the worker died (e.g. out of memory)."""

    def __init__(self, future: Future, display: Any, options: dict[str, Any]):
        self._future, self._display, self._options = future, display, options
        self._png: bytes | None = None

    def result(self) -> bytes:
        if self._png is None:
            try:
                self._png = self._future.result()
            except BrokenProcessPool:
                self._png = render(self._display, self._options)
            self._display = None
        return self._png


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """ALIGNEVAL_FIGURE_WORKERS if set; else one per usable CPU up to MAX_WORKERS on Linux with 2+ CPUs,
    and 0 (draw in this process) anywhere else. Always 0 where processes cannot fork, and in a daemonic
    process (a multiprocessing.Pool worker may not have children)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    workers = None
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = -1
        if workers < 0:
            raise UsageError(f"{WORKERS_ENV} must be a whole number >= 0 (0: draw figures in this process), "
                             f"not '{value}'")
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 0
    if workers is not None:
        return workers
    cpus = _usable_cpus()
    return min(MAX_WORKERS, cpus) if cpus >= 2 and sys.platform.startswith("linux") else 0


def _start_worker() -> None:
    """A worker ignores Ctrl-C: the report's process takes it, lets each worker finish the figure it is
    drawing and stops them (exit 130, no traceback from a worker); then imports matplotlib. SIGINT
    arrives blocked (FigurePool forks with it blocked), so one sent between the fork and here is dropped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    styled_matplotlib()


class FigurePool:
    """Forked workers that draw figures; started at once so their matplotlib import overlaps the report."""

    def __init__(self, workers: int):
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                         initializer=_start_worker)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # inherited by the workers
        try:
            self._pool.submit(os.getpid)  # forks the workers now: each imports matplotlib (initializer)
        except OSError:  # fork refused (process or memory limits): let the caller draw here
            self._pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def submit(self, display: Any, options: dict[str, Any]) -> bytes | PendingFigure:
        try:
            return PendingFigure(self._pool.submit(render, display, options), display, options)
        except BrokenProcessPool:  # a worker died earlier: the pool takes no more work
            return render(display, options)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_POOL: contextvars.ContextVar[FigurePool | None] = contextvars.ContextVar("aligneval_figure_pool", default=None)


@contextlib.contextmanager
def rendering(workers: int | None = None) -> Iterator[None]:
    """Figures submitted inside are drawn by `workers` forked processes (default `default_workers()`;
    0 draws each one here, when it is submitted)."""
    workers = default_workers() if workers is None else workers
    pool = None
    token = _POOL.set(None)
    try:
        if workers > 0:
            with _ctrl_c_deferred():  # a pool stopped halfway through its start would keep the process alive
                try:
                    pool = FigurePool(workers)
                except OSError:  # no process could be forked: every figure is drawn here
                    pool = None
            _POOL.set(pool)
        yield
    finally:
        _POOL.reset(token)
        if pool is not None:
            with _ctrl_c_deferred():
                pool.close()


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Ctrl-C held back until the block is done, then raised: starting and stopping the pool are not
    left halfway (idle workers of a pool never stopped would keep the process from exiting)."""
    if (threading.current_thread() is not threading.main_thread()  # only the main thread handles signals
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):  # SIGINT ignored or handled
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def submit(display: Any, **options: Any) -> bytes | PendingFigure:
    """The display's PNG (`plot(**options)`, then `figure_png`): drawn by a worker inside `rendering()`
    with workers, else here and now. A display already plotted (a section written before the workers)
    is cropped and encoded here. Read the bytes with `png_of`."""
    pool = _POOL.get()
    if getattr(display, "figure_", None) is not None:
        return figure_png(display)
    return render(display, options) if pool is None else pool.submit(display, options)


def png_of(figure: bytes | PendingFigure) -> bytes:
    return figure if isinstance(figure, bytes) else figure.result()
