"""A fast model wrapper for TextAttack: length-sorted, dynamically padded batches under inference_mode,
and a cache of already-scored texts.

TextAttack's own HuggingFaceModelWrapper pads every query to the tokenizer's max length (512) in
batches of 32; most attack time is spent there. This wrapper receives a whole search step's
candidate list (the goal function's batch size is raised to cover it) and scores it in batches of
similar length. It duck-types TextAttack's ModelWrapper (`__call__`, `model`, `tokenizer`), so this
module never imports TextAttack.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aligneval.artifacts import read_json
from aligneval.errors import ArtifactError, UsageError
from aligneval.predict import load_model
from aligneval.tasks import CLASSIFICATION, task_of_config

Text = Any  # str, or a tuple (text, text_pair) for pair tasks


def load_classifier(path: str | Path, trust_remote_code: bool = False, device: str | None = None):
    """Model + tokenizer from a local folder (safetensors weights only), in eval mode, on `device`
    (None: the process's --device, else CUDA on this rank's GPU, MPS, or the CPU), loaded exactly as
    prediction loads it (same head, padding rule and errors). Attacks need a sequence classifier."""
    folder = Path(path)
    if not folder.is_dir():
        raise ArtifactError(f"model folder not found: {folder}")
    if not any(folder.glob("*.safetensors")):
        raise ArtifactError(f"{folder}: no *.safetensors weights (aligneval loads safetensors only)")
    task = task_of_config(read_json(folder / "config.json"))
    if task != CLASSIFICATION:
        raise UsageError(f"{folder}: a {task} model; TextAttack's recipes attack sequence classifiers only")
    return load_model(folder, trust_remote_code=trust_remote_code, device=device)


def weights_sha256(path: str | Path) -> str:
    """sha256 over the folder's safetensors files (names and bytes): identifies the weights."""
    h = hashlib.sha256()
    for f in sorted(Path(path).glob("*.safetensors")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class BatchedClassifier:
    """Callable list-of-texts -> logits [n, n_classes] (float32 numpy), as TextAttack's own wrapper
    returns: the goal function applies the softmax, exactly as it does for the TextAttack CLI."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 256, batch_size: int = 32,
                 cache_size: int = 100_000):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.cache: dict[Text, np.ndarray] = {}
        self.forward_calls = 0  # texts actually run through the model
        self.cache_hits = 0

    def clear_cache(self) -> None:
        self.cache.clear()

    def __call__(self, text_input_list: Sequence[Text]) -> np.ndarray:
        texts = [t if isinstance(t, str) else tuple(t) for t in text_input_list]
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        self.cache_hits += len(texts) - len(todo)
        if todo:
            probs = self._score(todo)
            if len(self.cache) + len(todo) > self.cache_size:
                self.cache.clear()
            self.cache.update(zip(todo, probs))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def _encode(self, batch: list[Text]):
        if isinstance(batch[0], tuple):
            first, second = [b[0] for b in batch], [b[1] for b in batch]
            return self.tokenizer(first, second, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
        return self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def _score(self, texts: list[Text]) -> list[np.ndarray]:
        import torch

        lengths = [len(t) if isinstance(t, str) else sum(map(len, t)) for t in texts]
        order = np.argsort(lengths, kind="stable")
        out: list[np.ndarray | None] = [None] * len(texts)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self._encode([texts[i] for i in idx]).to(device)  # tokenized on the CPU, moved once
                logits = self.model(**enc).logits.float().cpu().numpy()  # TextAttack wants numpy
                for row, i in enumerate(idx):
                    out[i] = logits[row]
        self.forward_calls += len(texts)
        return out  # type: ignore[return-value]

    def predict_proba(self, texts: Sequence[Text]) -> np.ndarray:
        """Softmax probabilities without touching the cache (for choosing examples)."""
        return softmax(np.stack(self._score(list(texts))))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
