"""Key–query alignment diagnostics as pure functions: per-(example, head) MMD², held-out linear-probe
accuracy and attention entropy over the real (non-padding) tokens.

Written from the definitions, independently of the training losses in `aligneval/align/kernels.py`,
so the alignment suite checks what training claims instead of repeating it. Inputs are the per-head
tensors `aligneval.align.hooks` captures, k and q of shape [B, H, L, d_h] (before the 1/sqrt(d_h)
scaling), and an attention mask [B, L] (1 = real token). Padding positions are never read: NaN or
huge values there change nothing. Arithmetic is float64; results are numpy arrays.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from aligneval.threads import one_thread

DEFAULT_SCALES = (0.5, 1.0, 2.0)
_CHUNK_ELEMENTS = 1 << 22  # about this many float64 entries per [G, n, n] block (32 MiB)


def _prepare(k: Any, q: Any, mask: Any):
    import torch

    k = torch.as_tensor(k).detach().to("cpu")
    q = torch.as_tensor(q).detach().to("cpu")
    valid = torch.as_tensor(mask).detach().to("cpu").bool()
    if k.shape != q.shape or k.dim() != 4 or valid.shape != (k.shape[0], k.shape[2]):
        raise ValueError(f"expected k, q [B, H, L, d] and mask [B, L]; got {tuple(k.shape)}, {tuple(q.shape)}, "
                         f"{tuple(valid.shape)}")
    return k, q, valid


def _by_length(k, q, valid, chunk: int):
    """Examples grouped by their number n of valid tokens, padding dropped: yields (example rows,
    k [g, H, n, d], q [g, H, n, d]) in float64, at most about `chunk` // n² examples × heads at a
    time. Boolean indexing reads only the valid positions, so nothing in the padding is ever used;
    and nothing is computed on padding, which is most of a padded batch's pairs."""
    import torch

    counts = valid.sum(-1)
    heads, dim = k.shape[1], k.shape[3]
    for n in torch.unique(counts).tolist():
        rows = torch.nonzero(counts == n, as_tuple=True)[0]
        step = max(1, chunk // max(1, heads * n * n))
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            sel = valid[part][:, None, :].expand(len(part), heads, valid.shape[1])
            kg = k[part][sel].reshape(len(part), heads, n, dim).to(torch.float64)
            qg = q[part][sel].reshape(len(part), heads, n, dim).to(torch.float64)
            yield part, kg, qg


def _sq_dist(a, b):
    """Squared Euclidean distances [..., N, M] between rows of a [..., N, d] and b [..., M, d]."""
    d2 = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2.0 * a @ b.transpose(-1, -2)
    return d2.clamp_min(0.0)


def _mmd2_group(x, y, scales: Sequence[float], bandwidth: float | None):
    """MMD²_u of x, y [G, n, d] (no padding), one value per row of G."""
    import torch

    g, n, _ = x.shape
    if n < 2:
        return torch.full((g,), float("nan"), dtype=torch.float64)
    dxx, dyy, dxy = _sq_dist(x, x), _sq_dist(y, y), _sq_dist(x, y)
    if bandwidth is None:
        # median over the distinct pairs of the pooled 2n points: i<j within keys and within queries,
        # every (key, query) pair across; for an even count the mean of the two middle values, as
        # numpy's median (two selections are about twice as fast as torch.quantile's sort)
        iu, ju = torch.triu_indices(n, n, offset=1)
        pooled = torch.cat([dxx[:, iu, ju], dyy[:, iu, ju], dxy.reshape(g, -1)], dim=1)
        c = pooled.shape[1]
        low = pooled.kthvalue((c - 1) // 2 + 1, dim=1).values
        med = low if c % 2 else (low + pooled.kthvalue(c // 2 + 1, dim=1).values) / 2
        # all points equal: any bandwidth gives the same kernel matrix; avoid 0/0
        med = torch.where(med > 0, med, torch.ones_like(med))
    else:
        med = torch.full((g,), float(bandwidth), dtype=torch.float64)
    total = torch.zeros(g, dtype=torch.float64)
    for s in scales:
        h = (s * med)[:, None, None]
        block = torch.exp(-dxx / h) + torch.exp(-dyy / h) - 2.0 * torch.exp(-dxy / h)
        # sum over i != j of k(x_i,x_j) + k(y_i,y_j) - k(x_i,y_j) - k(x_j,y_i); the last two sums are equal
        total += block.sum((1, 2)) - block.diagonal(dim1=1, dim2=2).sum(1)
    return total / (n * (n - 1))


def mmd2(k: Any, q: Any, mask: Any, scales: Sequence[float] = DEFAULT_SCALES,
         bandwidth: float | None = None) -> np.ndarray:
    """Squared MMD between the keys and the queries of each (example, head): [B, H].

    Kernel: sum over `scales` s of exp(-||a - b||² / (s·m)), where m (the median heuristic) is the
    median squared distance over all distinct pairs of the example's pooled valid keys and queries
    (per head), or the fixed `bandwidth` when given. The estimator is the **unbiased U-statistic**
    MMD²_u of Gretton et al. (JMLR 2012, eq. 3) for equal sample sizes:
    1/(n(n-1)) Σ_{i≠j} [k(k_i,k_j) + k(q_i,q_j) − k(k_i,q_j) − k(k_j,q_i)]. Why: k_i and q_i come
    from the same token, so they are dependent; dropping i = j from the cross term too keeps the
    estimate unbiased under that pairing, and it is exactly 0 when keys equal queries. The biased
    (V) estimator would add a positive term of order 1/n that depends on the sentence length, so
    sentences of different lengths would not be comparable. It can be slightly negative when the
    two distributions are close. Examples with fewer than 2 valid tokens give NaN.
    """
    import torch

    if not scales or any(not math.isfinite(float(s)) or float(s) <= 0 for s in scales):
        raise ValueError(f"scales must be positive numbers, not {list(scales)}")
    k, q, valid = _prepare(k, q, mask)
    b, h = k.shape[:2]
    out = torch.full((b, h), float("nan"), dtype=torch.float64)
    # many small tensor ops: measured on a loaded 2-core machine, MMD² of one 64-sentence batch took
    # 0.36 s on one thread and 8.9 s on two
    with one_thread():
        for rows, kg, qg in _by_length(k, q, valid, _CHUNK_ELEMENTS):
            g, _, n, d = kg.shape
            value = _mmd2_group(kg.reshape(g * h, n, d), qg.reshape(g * h, n, d), [float(s) for s in scales],
                                bandwidth)
            out[rows] = value.reshape(g, h)
    return out.numpy()


def attention_entropy(q: Any, k: Any, mask: Any) -> np.ndarray:
    """Mean attention entropy (nats) of each (example, head): [B, H].

    Rows are softmax(q_i·k_j / sqrt(d_h)) over the example's valid keys j; the entropy
    −Σ_j p_ij log p_ij is averaged over the valid query rows i. This is the model's own attention
    for architectures whose scores are exactly QKᵀ/sqrt(d_h) + mask (BERT, RoBERTa, ELECTRA,
    ALBERT, DistilBERT, DeBERTa-v2 without relative attention); where the model adds
    relative-position terms (MPNet, DeBERTa-v2/v3 with relative attention) it is the content
    (key–query) part only. Uniform attention over n tokens gives log n.
    """
    import torch

    k, q, valid = _prepare(k, q, mask)
    out = torch.full(k.shape[:2], float("nan"), dtype=torch.float64)
    with one_thread():
        for rows, kg, qg in _by_length(k, q, valid, _CHUNK_ELEMENTS):
            if kg.shape[2] == 0:
                continue
            logp = torch.log_softmax(qg @ kg.transpose(-1, -2) / math.sqrt(kg.shape[-1]), dim=-1)
            out[rows] = -(logp.exp() * logp).sum(-1).mean(-1)  # logp is finite: no 0 * -inf
    return out.numpy()


def gather_tokens(x: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """The valid tokens of x [B, H, L, d] as [T, H, d] (float64 stays, anything else becomes float32:
    numpy has no bfloat16), plus each token's example index [T]."""
    import torch

    x = torch.as_tensor(x).detach().to("cpu")
    valid = torch.as_tensor(mask).detach().to("cpu").bool()
    rows, _ = torch.nonzero(valid, as_tuple=True)
    tokens = x.permute(0, 2, 1, 3)[valid]  # boolean indexing reads only the valid positions
    tokens = tokens if tokens.dtype == torch.float64 else tokens.to(torch.float32)
    return tokens.numpy(), rows.numpy().astype(np.int64)


def probe_accuracy_tokens(k_tokens: np.ndarray, q_tokens: np.ndarray, example: np.ndarray, train: np.ndarray,
                          c: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """Held-out accuracy of a fresh linear probe telling keys (1) from queries (0): [n_examples, H].

    Per head: standardize, then an L2 logistic regression (scikit-learn, inverse strength `c`)
    fitted on every key and query token of the examples with `train[e]` True, and scored on the
    tokens of each other example (its value = the share of its 2n key/query tokens classified
    correctly). Training examples get NaN. 0.5 means keys and queries are linearly
    indistinguishable; identical keys and queries give exactly 0.5 (each point appears once per class).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train = np.asarray(train, bool)
    n_examples = len(train)
    k_tokens, q_tokens = np.asarray(k_tokens, np.float64), np.asarray(q_tokens, np.float64)
    example = np.asarray(example, np.int64)
    if k_tokens.shape != q_tokens.shape or k_tokens.ndim != 3 or len(example) != len(k_tokens):
        raise ValueError("expected k_tokens, q_tokens [T, H, d] and example [T]")
    t, heads, _ = k_tokens.shape
    out = np.full((n_examples, heads), np.nan)
    ex = np.concatenate([example, example])
    y = np.concatenate([np.ones(t, np.int64), np.zeros(t, np.int64)])
    fit_rows = train[ex]
    test_rows = ~fit_rows
    if not fit_rows.any() or not test_rows.any():
        return out
    counts = np.bincount(ex[test_rows], minlength=n_examples)
    for head in range(heads):
        features = np.concatenate([k_tokens[:, head], q_tokens[:, head]])
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=int(max_iter)))
        # a (d_h + 1)-parameter L-BFGS gains nothing from BLAS threads; on a busy 2-core machine their
        # spin-waits made each fit about 7x slower (measured)
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            # a probe stopped at max_iter still gives an honest held-out accuracy
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(features[fit_rows], y[fit_rows])
        correct = probe.predict(features[test_rows]) == y[test_rows]
        hits = np.bincount(ex[test_rows], weights=correct.astype(np.float64), minlength=n_examples)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, head] = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    out[train] = np.nan
    return out


def probe_accuracy(k: Any, q: Any, mask: Any, train: Any, c: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """`probe_accuracy_tokens` on padded k, q [B, H, L, d] with mask [B, L] and train [B]: [B, H]."""
    k_tokens, example = gather_tokens(k, mask)
    q_tokens, _ = gather_tokens(q, mask)
    return probe_accuracy_tokens(k_tokens, q_tokens, example, np.asarray(train, bool), c, max_iter)
