"""transformers 5 draws its own progress bars when it loads and writes weights ("Loading weights",
"Writing model shards"). They break aligneval's one-line errors and clutter its own progress display,
so they are off while aligneval loads or saves a model."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def transformers_bars_off() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            with warnings.catch_warnings():  # huggingface_hub warns when HF_HUB_DISABLE_PROGRESS_BARS overrides it
                warnings.simplefilter("ignore", UserWarning)
                hf_logging.enable_progress_bar()
