"""ECE, MCE and ACE are computed with numpy over netcal's bins; netcal itself is the reference, given
what aligneval's metric means (top-label confidence and 0/1 correctness), on binary and 3-class
cases, ties that collapse quantile edges included. And scoring calibration imports neither netcal
nor torch (the 2 s of CPU it cost every run from cached predictions), and AUROC's average ranks
match scipy's rankdata without importing scipy.stats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from netcal.metrics import ACE, ECE, MCE

from aligneval.metrics import get_metric

EPS = float(np.finfo(np.float64).eps)


def _case(seed: int, k: int, n: int = 700, rounded: bool = False):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * rng.uniform(0.5, 3.0)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    if rounded:  # many tied confidences
        p = np.round(p, 1)
        p[:, -1] = 1 - p[:, :-1].sum(1)
        p = np.clip(p, 0, 1)
    return p, rng.integers(0, k, n)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("bins", [10, 15])
def test_equal_width_ece_mce_match_netcal(seed, k, bins):
    probs, labels = _case(seed, k)
    conf, hit = probs.max(1), (probs.argmax(1) == labels).astype(np.int64)
    assert get_metric(f"ece@{bins}")(probs, labels) == pytest.approx(ECE(bins=bins).measure(conf, hit), abs=1e-12)
    assert get_metric(f"mce@{bins}")(probs, labels) == pytest.approx(MCE(bins=bins).measure(conf, hit), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3])
def test_equal_mass_ace_matches_netcal(seed, k):
    probs, labels = _case(seed, k)
    conf, hit = probs.max(1), (probs.argmax(1) == labels).astype(np.int64)
    want = ACE(bins=15, equal_intervals=False).measure(conf, hit)
    assert get_metric("ace@15")(probs, labels) == pytest.approx(want, abs=1e-12)


def test_tied_confidences_leave_empty_bins_out():
    """Rounded probabilities tie: quantile edges coincide (netcal's scipy binning refuses them), and the
    equal-width bins are checked against netcal; ACE against a loop over the non-empty bins."""
    probs, labels = _case(9, 2, rounded=True)
    conf, hit = probs.max(1), (probs.argmax(1) == labels).astype(np.int64)
    assert get_metric("ece@15")(probs, labels) == pytest.approx(ECE(bins=15).measure(conf, hit), abs=1e-12)
    c = np.clip(conf, EPS, 1 - EPS)
    edges = np.quantile(c, np.linspace(0, 1, 16))
    edges[0], edges[-1] = 0.0, 1.0
    idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, 14)
    gaps = [abs(hit[idx == b].mean() - c[idx == b].mean()) for b in range(15) if (idx == b).any()]
    assert get_metric("ace@15")(probs, labels) == pytest.approx(np.mean(gaps), abs=1e-12)


def test_scoring_calibration_imports_neither_netcal_nor_torch():
    code = ("import sys, numpy as np\n"
            "from aligneval.metrics import get_metric\n"
            "p = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]]); y = np.array([1, 1, 0])\n"
            "[get_metric(m)(p, y) for m in ('ece@15', 'mce@15', 'ace@15', 'brier', 'nll')]\n"
            "print(sorted(m for m in ('netcal', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("seed", range(4))
def test_average_ranks_match_scipy(seed):
    from scipy.stats import rankdata

    from aligneval.metrics.uncertainty import average_ranks

    rng = np.random.default_rng(seed)
    x = np.round(rng.random(500), 2)  # many ties
    np.testing.assert_array_equal(average_ranks(x), rankdata(x))
    y = rng.random(300)  # no ties
    np.testing.assert_array_equal(average_ranks(y), rankdata(y))


def test_scoring_uncertainty_imports_no_scipy_stats():
    code = ("import sys, numpy as np\n"
            "from aligneval.metrics import get_metric\n"
            "p = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]]); y = np.array([1, 1, 0])\n"
            "[get_metric(m)(p, y) for m in ('aurc', 'auroc_error')]\n"
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
