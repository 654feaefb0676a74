"""Temperature scaling (Guo et al. 2017) as a small estimator: fit on a held-out dev split, apply to test.

`fit` minimizes the mean NLL of softmax(z / T) over T. Default `method="bounded"`: scipy's bounded
Brent search over log T in [log 0.01, log 100] (NLL is convex in 1/T, so this finds the optimum).
`method="grid"` is the Desai & Durrett (2020) protocol the paper follows: T in {0.01, 0.02, ..., 10.00},
the smallest NLL wins. Inputs are logits, or probabilities with `input="probs"` (log p differs from
the logits by a per-row constant, which softmax ignores, so both give the same T).
"""

from __future__ import annotations

import numpy as np

from aligneval.errors import UsageError

METHODS = ("bounded", "grid")
BOUNDS = (0.01, 100.0)
GRID = np.round(np.arange(1, 1001) * 0.01, 2)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(z))


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities usable as logits (clipped so that p = 0 stays finite)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None))


def scale_probs(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """Apply a fitted temperature to stored probabilities: softmax(log p / T). No temperature (None or
    1) returns `probs` itself."""
    if temperature is None or temperature == 1.0:
        return probs
    return softmax(logits_from_probs(probs) / float(temperature))


def nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    lp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-lp[np.arange(len(lp)), labels].mean())


class TemperatureScaler:
    """sklearn-style: `TemperatureScaler().fit(dev_logits, dev_labels).transform(test_logits) -> probs`."""

    def __init__(self, method: str = "bounded", input: str = "logits"):
        if method not in METHODS:
            raise UsageError(f"temperature method must be one of {', '.join(METHODS)}, not '{method}'")
        if input not in ("logits", "probs"):
            raise UsageError(f"temperature input must be 'logits' or 'probs', not '{input}'")
        self.method = method
        self.input = input
        self.temperature_: float | None = None

    def _logits(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return logits_from_probs(x) if self.input == "probs" else x

    def fit(self, x, labels) -> "TemperatureScaler":
        z = self._logits(x)
        y = np.asarray(labels, dtype=np.int64)
        if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
            raise UsageError(f"temperature scaling needs [n, k] scores and n labels, got {z.shape} and {y.shape}")
        if self.method == "grid":
            losses = np.array([nll_at(z, y, t) for t in GRID])
            self.temperature_ = float(GRID[int(np.argmin(losses))])
        else:
            from scipy.optimize import minimize_scalar

            res = minimize_scalar(lambda lt: nll_at(z, y, float(np.exp(lt))),
                                  bounds=(np.log(BOUNDS[0]), np.log(BOUNDS[1])), method="bounded",
                                  options={"xatol": 1e-7})
            self.temperature_ = float(np.exp(res.x))
        return self

    def transform(self, x) -> np.ndarray:
        if self.temperature_ is None:
            raise UsageError("TemperatureScaler: call fit on the dev split before transform")
        return softmax(self._logits(x) / self.temperature_)

    def fit_transform(self, x, labels) -> np.ndarray:
        return self.fit(x, labels).transform(x)
