"""Which statistics a split's bootstrap runs: chunk_stats' numpy ones, or the same statistics as
compiled loops (aligneval.compare.fused, with numba from the `fast` extra) on splits large enough for
them to pay for numba's start-up. `statistic` is the one place a record's metric becomes a statistic."""

from __future__ import annotations

import importlib.util
import os
import threading

import numpy as np

from aligneval.compare.chunk_stats import FAST, RANKED_FAMILIES, Ranked, Statistic, generic_statistic
from aligneval.errors import DataError, UsageError
from aligneval.metrics import base_metric_name, get_metric, scale_probs

ENGINE_ENV = "ALIGNEVAL_STATS_ENGINE"  # auto (the default), fused or numpy
ENGINES = ("auto", "fused", "numpy")
# below this many examples, numba's fixed cost per process (about 0.2 s to import it and 0.25 s to load
# the compiled loops on the 2-core benchmark machine) exceeds what it saves on 1,000 resamples
FUSED_MIN_EXAMPLES = 20_000


def fused_statistics() -> dict:
    """The compiled statistics by metric family; empty where numba does not import."""
    from aligneval.compare import fused  # numba: heavy and optional, so imported only when asked

    return fused.FUSED


def _wanted(n: int) -> bool:
    choice = os.environ.get(ENGINE_ENV, "auto") or "auto"
    if choice not in ENGINES:
        raise UsageError(f"{ENGINE_ENV}={choice!r}: expected one of {', '.join(ENGINES)}")
    return choice == "fused" or (choice == "auto" and n >= FUSED_MIN_EXAMPLES)


_WARM: list[threading.Thread] = []


def warm_up(n: int) -> None:
    """Where a split of n examples will get the compiled statistics, import numba and load them in a
    background thread now (about 0.5 s on the benchmark machine), while compare reads the predictions
    and sorts them, instead of at the first bootstrap block. Once per process."""
    if _WARM or not _wanted(n) or importlib.util.find_spec("numba") is None:
        return
    _WARM.append(threading.Thread(target=_load_compiled, name="aligneval-numba-warm-up", daemon=True))
    _WARM[0].start()


def _load_compiled() -> None:
    try:
        from aligneval.compare import fused  # numba: heavy and optional

        fused.warm()
    except Exception:  # noqa: BLE001 - a failure here shows again, with its message, where the loops are used
        pass


def engine(n: int) -> str:
    """"fused" where numba imports and the split has at least FUSED_MIN_EXAMPLES examples (any size
    with ALIGNEVAL_STATS_ENGINE=fused, which refuses to run without numba), else "numpy"."""
    if not _wanted(n):
        return "numpy"
    if fused_statistics():
        return "fused"
    if os.environ.get(ENGINE_ENV) == "fused":
        raise UsageError(f"{ENGINE_ENV}=fused needs numba: pip install 'aligneval[fast]'")
    return "numpy"


def compiled_counts(rng: np.random.Generator, n: int, c: int) -> np.ndarray | None:
    """Where a split gets the compiled statistics, its resample counts [c, n] too: the same counts as
    numpy's draw and bincount, the generator left in the same state (aligneval.compare.kernels
    .draw_counts), about 40% faster. None: draw them with numpy."""
    if not _wanted(n) or not fused_statistics():
        return None
    from aligneval.compare import kernels  # numba, already imported by fused_statistics

    return kernels.draw_counts(rng, n, c)


def statistic(metric: str, probs: np.ndarray, labels: np.ndarray, temperature: float | None = None,
              ranked: dict | None = None) -> Statistic:
    """The bootstrap statistic for a record's metric on stored predictions (fast path when one exists).
    `ranked`: a dict the caller keeps per model, so statistics of the same (probs, temperature) share
    one temperature-scaled copy, one sorted view and (fused) one pass per block."""
    name = base_metric_name(metric)
    m = get_metric(name)
    family, _, param = name.partition("@")
    views = {} if ranked is None else ranked
    scaled = views.get(("probs", temperature))
    if scaled is None:
        scaled = views[("probs", temperature)] = scale_probs(np.asarray(probs, dtype=np.float64), temperature)
    labels = np.asarray(labels, dtype=np.int64)
    if family not in FAST:
        if m.fn is None:
            raise DataError(f"metric '{metric}' cannot be recomputed from one split's predictions")
        return generic_statistic(m.fn, scaled, labels)
    fused = engine(len(labels)) == "fused" and family in fused_statistics()
    kwargs = {"bins": int(param)} if param else dict(m.params or {})
    if fused or family in ("accuracy", "macro_f1"):  # counts of a sorted view, when one exists
        kwargs.update(views=views, temperature=temperature)
    if family in RANKED_FAMILIES:
        if ("ranked", temperature) not in views:
            like = next((v for k, v in views.items() if k[0] == "ranked"), None)
            views[("ranked", temperature)] = Ranked(scaled, labels, like=like)
        kwargs["ranked"] = views[("ranked", temperature)]
    if not fused:
        return FAST[family](scaled, labels, **kwargs)
    stat = fused_statistics()[family](scaled, labels, **kwargs)
    stat.reads_float = False  # counts only: the draw need not convert chunks to float64
    return stat
