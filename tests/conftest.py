"""Tests never reach a model or dataset hub: everything they use ships in the repo or an installed package."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# transformers 5 draws "Loading weights" / "Writing model shards" bars on stderr (it reads this variable),
# which would precede the one-line errors the tests read from stderr
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
