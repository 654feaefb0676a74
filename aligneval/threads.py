"""torch's intra-op threads, narrowed for a stretch of work and restored after.

Two places run many short tensor ops where an OpenMP team of two costs more than it gives, most of all
on a busy machine, where every op's barrier waits for the thread that was descheduled: the alignment
diagnostics, and prediction on the CPU (which runs one batch per thread instead, see
aligneval.predict.softmax_batches).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the duration (the count it had is restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
