"""Figures drawn by forked workers (aligneval.report.figures): the same bytes as drawn in-process, the
worker count from the platform and ALIGNEVAL_FIGURE_WORKERS, a dead worker's or a refused fork's figures
drawn here, and Ctrl-C in a real process group: exit 130 with one line, no worker left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from aligneval.cli import main
from aligneval.compare import compare, load
from aligneval.errors import UsageError
from aligneval.report import build_report, figures
from aligneval.report import displays as D
from tests.fixtures_results import make_run

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="figure workers fork: Linux only")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("figures") / "run", n=200, nasty=True)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@linux_only
def test_workers_write_the_same_report_as_this_process(run, tmp_path, monkeypatch):
    comp = compare(run, resamples=50)
    monkeypatch.setenv(figures.WORKERS_ENV, "0")
    build_report(run, tmp_path / "here", comparison=comp)
    submitted = []
    real_submit = figures.FigurePool.submit

    def spy(self, display, options):
        submitted.append(type(display).__name__)
        return real_submit(self, display, options)

    monkeypatch.setattr(figures.FigurePool, "submit", spy)
    monkeypatch.setenv(figures.WORKERS_ENV, "2")
    build_report(run, tmp_path / "workers", comparison=comp)
    here, workers = _files(tmp_path / "here"), _files(tmp_path / "workers")
    plots = [name for name in here if name.startswith("plots/")]
    assert len(plots) >= 8 and len(submitted) == len(plots)  # every figure went to a worker
    assert here.keys() == workers.keys()
    assert [name for name in here if here[name] != workers[name]] == []  # byte for byte, html and md too


def test_worker_count_follows_the_variable_then_the_platform(monkeypatch):
    monkeypatch.setenv(figures.WORKERS_ENV, "3")
    assert figures.default_workers() == 3
    monkeypatch.setenv(figures.WORKERS_ENV, "0")
    assert figures.default_workers() == 0
    monkeypatch.delenv(figures.WORKERS_ENV)
    monkeypatch.setattr(figures.sys, "platform", "linux")
    for cpus, expected in ((1, 0), (2, 2), (3, 3), (64, figures.MAX_WORKERS)):
        monkeypatch.setattr(figures, "_usable_cpus", lambda cpus=cpus: cpus)
        assert figures.default_workers() == expected
    monkeypatch.setattr(figures.multiprocessing.current_process(), "daemon", True)
    assert figures.default_workers() == 0  # a multiprocessing.Pool worker may not have children
    monkeypatch.undo()
    monkeypatch.setattr(figures.sys, "platform", "darwin")  # fork is unsafe there, spawn too slow
    monkeypatch.delenv(figures.WORKERS_ENV, raising=False)
    assert figures.default_workers() == 0
    monkeypatch.setenv(figures.WORKERS_ENV, "3")
    assert figures.default_workers() == 3  # asked for: forked even there
    monkeypatch.setattr(figures.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert figures.default_workers() == 0  # Windows: no fork, whatever is asked


def _report_in_a_pool_worker(run, out):
    build_report(run, out, resamples=20)
    return sorted(p.name for p in (out / "plots").iterdir())


@linux_only
def test_a_report_from_a_pool_worker_draws_its_figures_itself(run, tmp_path):
    """multiprocessing.Pool workers are daemonic and may not fork: the report draws in-process there."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        plots = pool.apply(_report_in_a_pool_worker, (run, tmp_path / "o"))
    assert len(plots) >= 8


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_worker_count_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv(figures.WORKERS_ENV, value)
    with pytest.raises(UsageError, match=f"{figures.WORKERS_ENV}.*'{value}'"):
        figures.default_workers()


def test_a_bad_worker_count_stops_the_report_before_the_comparison(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(figures.WORKERS_ENV, "many")
    out = tmp_path / "o"
    assert main(["report", str(run), "--out", str(out), "--resamples", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and figures.WORKERS_ENV in err
    assert not (out / "comparison.json").exists()


def test_a_dead_worker_s_figure_is_drawn_here(run):
    display = D.ReliabilityDisplay.from_results(load(run), "test", ["baseline", "aligned"])
    expected = figures.render(display, {})
    broken: Future = Future()
    broken.set_exception(BrokenProcessPool("a worker was killed"))
    assert figures.PendingFigure(broken, display, {}).result() == expected
    failed: Future = Future()
    failed.set_exception(ValueError("a plotting bug"))  # anything else is the figure's own error
    with pytest.raises(ValueError, match="plotting bug"):
        figures.PendingFigure(failed, display, {}).result()


def test_a_display_plotted_by_its_section_is_drawn_here(run):
    """Sections written before the workers passed plotted displays to plot_of: they still work."""
    res = load(run)
    expected = figures.render(D.ReliabilityDisplay.from_results(res, "test", ["baseline", "aligned"]), {})
    plotted = D.ReliabilityDisplay.from_results(res, "test", ["baseline", "aligned"]).plot()
    with figures.rendering(2 if sys.platform.startswith("linux") else 0):
        assert figures.png_of(figures.submit(plotted)) == expected


@linux_only
def test_a_refused_fork_draws_the_figures_here(run, tmp_path, monkeypatch):
    comp = compare(run, resamples=20)
    monkeypatch.setenv(figures.WORKERS_ENV, "0")
    build_report(run, tmp_path / "here", comparison=comp)

    def refuse():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(figures.os, "fork", refuse)
    monkeypatch.setenv(figures.WORKERS_ENV, "2")
    build_report(run, tmp_path / "refused", comparison=comp)
    assert _files(tmp_path / "here") == _files(tmp_path / "refused")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


@linux_only
def test_worker_ignores_ctrl_c():
    """The report's process takes Ctrl-C and stops the workers; a worker does not print its own."""
    pool = figures.FigurePool(1)
    try:
        assert pool._pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN
    finally:
        pool.close()


@linux_only
def test_ctrl_c_while_figures_are_drawn_is_one_line_and_exit_130(run, tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the report and its figure workers."""
    env = {**os.environ, figures.WORKERS_ENV: "2", "ALIGNEVAL_LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.Popen([sys.executable, "-m", "aligneval", "report", str(run), "--out", str(tmp_path / "o"),
                             "--resamples", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = _children(proc.pid)
    if len(workers) < 2:
        proc.kill()
        pytest.fail(f"the figure workers were never seen (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "interrupted: finished work is kept; re-run the same command to resume\n"
    assert [pid for pid in workers if os.path.exists(f"/proc/{pid}")] == []  # stopped and reaped


@pytest.fixture
def sigint_restored():
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_the_pool_starts_is_raised_once_it_has_started(sigint_restored):
    """A KeyboardInterrupt in the middle of the pool's start would leave workers nobody stops: it is
    held until the block is done, then raised; an ignored SIGINT stays ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job (CI) starts with it ignored
    with pytest.raises(KeyboardInterrupt):
        with figures._ctrl_c_deferred():
            signal.raise_signal(signal.SIGINT)
            finished = True  # reached: the signal did not interrupt the block
    assert finished and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. started under nohup
    with figures._ctrl_c_deferred():  # not ours to change: nothing is replaced or raised
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_drawing_leaves_pyplot_and_the_user_s_backend_alone(run):
    """A report (or a display drawn in a notebook) neither imports pyplot nor switches the backend the
    user chose: figures are Figure objects on their own Agg canvas."""
    script = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from aligneval.compare import load\n"
        "from aligneval.report import displays as D\n"
        f"res = load({str(run)!r})\n"
        "d = D.ReliabilityDisplay.from_results(res, 'test', ['baseline', 'aligned']).plot()\n"
        "png = D.figure_png(d)\n"
        "print(png[:8] == b'\\x89PNG\\r\\n\\x1a\\n', matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules,\n"
        "      type(d.figure_.canvas).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "svg", "False", "FigureCanvasAgg"]


def test_a_display_drawn_on_the_caller_s_axes_has_the_report_s_style(run):
    """Axes the caller made (before anything set the report's style up) still get the report's look for
    what the display draws (the title's weight and size; the axes' own labels keep what they were made with)."""
    script = (
        "import matplotlib.figure\n"
        "from aligneval.compare import load\n"
        "from aligneval.report import displays as D\n"
        "ax = matplotlib.figure.Figure().subplots()\n"
        f"res = load({str(run)!r})\n"
        "D.RiskCoverageDisplay.from_results(res, 'test', ['baseline', 'aligned']).plot(ax=ax)\n"
        "print(ax.title.get_fontweight(), ax.title.get_fontsize())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["bold", "10.5"]
