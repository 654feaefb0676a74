"""Each alignment loss against an independent computation (hand-computed cases, plain loops, numpy
log-domain Sinkhorn), padding invariance, and the signs the gradient-reversal games must produce."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aligneval.align import blocks, kernels
from aligneval.align.kernels import conditional_transport, mmd2_unbiased, sinkhorn_divergence
from aligneval.align.variants import build_aligner, ct, gan, variant_names
from aligneval.align.variants.ct import CTAligner
from aligneval.align.variants.gan import GanAligner
from aligneval.errors import UsageError

VARIANT_NAMES = ("gan", "ct", "ct-heads", "combine", "mmd", "sinkhorn")


@pytest.fixture(autouse=True)
def _float64():
    # per test, never at import: collection imports every module before any test runs, and a
    # module-level default would make every other module's tiny models float64
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _inputs(n=2, b=3, h=2, length=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(n, b, h, length, d, generator=g)
    q = torch.randn(n, b, h, length, d, generator=g) + 0.5
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return k, q, mask


def _aligner(name, n=2, d=4, seed=0, **kw):
    torch.manual_seed(seed)
    if name == "gan":
        kw.setdefault("dropout", 0.0)
    return build_aligner(name, n, d, **kw).double().eval()


# ----------------------------------------------------------------------------- registry


def test_registry_and_did_you_mean():
    assert set(VARIANT_NAMES) == set(variant_names())
    with pytest.raises(UsageError, match="did you mean 'gan'"):
        build_aligner("gam", 1, 4)
    with pytest.raises(UsageError):
        build_aligner("mmd", 1, 4, bogus=1)


# ----------------------------------------------------------------------------- hand-computed cases


def test_gan_hand_case_constant_discriminator():
    # D's output layer zeroed with bias b: every logit is b, so per token BCE = softplus(-b) + softplus(b).
    aligner = _aligner("gan", n=1)
    with torch.no_grad():
        aligner.disc.out.weight.zero_()
        aligner.disc.out.bias.fill_(0.3)
    k, q, mask = _inputs(n=1)
    expected = math.log1p(math.exp(-0.3)) + math.log1p(math.exp(0.3))
    assert torch.allclose(aligner(k, q, mask), torch.tensor([expected]), atol=1e-12)


def test_ct_hand_cases():
    cost = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    valid = torch.tensor([[True, True]])
    # Uniform navigator scores: each plan is 1/2 everywhere; every expected cost is 1/2.
    uniform = conditional_transport(cost, torch.zeros(1, 2, 2), valid, valid, rho=0.5)
    assert torch.allclose(uniform, torch.tensor([0.5]))
    # Scores that favour the diagonal send each point to its zero-cost partner: CT -> 0.
    sharp = conditional_transport(cost, 50.0 * torch.eye(2)[None], valid, valid, rho=0.3)
    assert sharp.item() < 1e-12
    # One padded key: every query must go to key 0; forward mean = mean_j C_0j = 0.5,
    # backward (key 0 only) = softmax over j of S_0j = uniform -> 0.5. rho=0.25 mixes to 0.5.
    pad = conditional_transport(cost, torch.zeros(1, 2, 2), torch.tensor([[True, False]]), valid, rho=0.25)
    assert torch.allclose(pad, torch.tensor([0.5]))


def test_mmd_hand_case():
    # 1-D clouds x = {0, 1}, y = {2, 3}; key-query squared distances {4, 9, 1, 4}: median 4.
    # U-statistic over i != j with one kernel exp(-d/4): e^{-1/4} - e^{-9/4}.
    x = torch.tensor([[[0.0], [1.0]]])
    y = torch.tensor([[[2.0], [3.0]]])
    value, usable = mmd2_unbiased(x, y, torch.tensor([[True, True]]), scales=(1.0,))
    assert usable.item()
    assert math.isclose(value.item(), math.exp(-0.25) - math.exp(-2.25), rel_tol=1e-12)


# ----------------------------------------------------------------------------- independent references


def _np_mmd(x, y, scales):
    n = len(x)
    dxy = ((x[:, None] - y[None]) ** 2).sum(-1)
    med = np.median(np.sort(dxy.ravel())[: (dxy.size + 1) // 2][-1:])  # lower median, as torch
    k = lambda a, b: sum(math.exp(-((a - b) ** 2).sum() / (s * med)) for s in scales)  # noqa: E731
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += k(x[i], x[j]) + k(y[i], y[j]) - k(x[i], y[j]) - k(x[j], y[i])
    return total / (n * (n - 1))


def test_mmd_matches_loop_reference_on_valid_tokens():
    k, q, mask = _inputs(n=1)
    value = _aligner("mmd", n=1)(k, q, mask)
    refs = []
    for b in range(k.shape[1]):
        n_valid = int(mask[b].sum())
        for h in range(k.shape[2]):
            x, y = k[0, b, h, :n_valid].numpy(), q[0, b, h, :n_valid].numpy()
            refs.append(_np_mmd(x, y, kernels.MMD_SCALES))
    assert value.item() == pytest.approx(float(np.mean(refs)), abs=1e-9)


def _np_mmd_linear(x, y, scales, med):
    k = lambda a, b: sum(math.exp(-((a - b) ** 2).sum() / (s * med)) for s in scales)  # noqa: E731
    hs = [k(x[i], x[i + 1]) + k(y[i], y[i + 1]) - k(x[i], y[i + 1]) - k(x[i + 1], y[i])
          for i in range(0, len(x) - 1, 2)]
    return float(np.mean(hs))


@pytest.mark.parametrize("padding", ["hole", "trailing", "none"])
def test_mmd_linear_estimator_matches_loop_reference_and_ignores_padding(padding):
    # --variant-option estimator=linear: disjoint pairs of each head's valid tokens in order; padding
    # (trailing, or anywhere, with garbage in it) changes neither the value nor the gradient, 0 there.
    k, q, mask = _inputs(n=2, b=3, h=2, length=9, seed=15)
    if padding == "hole":
        mask[0, 3] = 0  # the pairs' positions are looked up, not taken as two strided views
    elif padding == "none":
        mask = torch.ones_like(mask)
    aligner = _aligner("mmd", n=2, estimator="linear")
    kk, qq = k.clone().requires_grad_(True), q.clone().requires_grad_(True)
    value = aligner(kk, qq, mask)
    med = kernels._group_medians(k.reshape(6, 2, 9, 4), q.reshape(6, 2, 9, 4), mask.bool().repeat(2, 1)).view(2, 3, 2)
    for n in range(2):
        refs = []
        for b in range(3):
            idx = mask[b].nonzero().squeeze(-1)
            if len(idx) < 2:
                continue
            for h in range(2):
                refs.append(_np_mmd_linear(k[n, b, h, idx].numpy(), q[n, b, h, idx].numpy(), kernels.MMD_SCALES,
                                           med[n, b, h].item()))
        assert value[n].item() == pytest.approx(float(np.mean(refs)), abs=1e-12)
    pad = (mask == 0)[None, :, None, :, None].expand_as(k)
    kg, qg = k.masked_fill(pad, 1e4).requires_grad_(True), q.masked_fill(pad, float("nan")).requires_grad_(True)
    dirty = aligner(kg, qg, mask)
    assert torch.allclose(value, dirty, atol=1e-12)
    value.sum().backward()
    dirty.sum().backward()
    for clean_grad, dirty_grad in ((kk.grad, kg.grad), (qq.grad, qg.grad)):
        assert torch.allclose(clean_grad, dirty_grad, atol=1e-12) and torch.all(dirty_grad[pad] == 0)
    assert kk.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="estimator"):
        build_aligner("mmd", 1, 4, estimator="cubic")


def test_mmd_self_is_zero_and_grows_with_shift():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 40, 5, generator=g)
    valid = torch.ones(1, 40, dtype=torch.bool)
    self_value, _ = mmd2_unbiased(x, x.clone(), valid)
    assert abs(self_value.item()) < 1e-12
    shifted = [mmd2_unbiased(x, x + delta, valid)[0].item() for delta in (0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(shifted, shifted[1:]))
    assert shifted[0] > 0


def _np_entropic_ot(x, y, eps, iters=20000, tol=1e-13):
    """Plain numpy log-domain Sinkhorn between uniform clouds, squared Euclidean cost."""
    c = ((x[:, None] - y[None]) ** 2).sum(-1)
    loga, logb = np.full(len(x), -np.log(len(x))), np.full(len(y), -np.log(len(y)))
    f, g = np.zeros(len(x)), np.zeros(len(y))

    def lse(a, axis):
        m = a.max(axis=axis, keepdims=True)
        return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)

    for _ in range(iters):
        f_new = -eps * lse(logb[None] + (g[None] - c) / eps, axis=1)
        g = -eps * lse(loga[:, None] + (f_new[:, None] - c) / eps, axis=0)
        if np.abs(f_new - f).max() < tol:
            f = f_new
            break
        f = f_new
    return np.exp(loga) @ f + np.exp(logb) @ g


def _np_sinkhorn_divergence(x, y, eps):
    return _np_entropic_ot(x, y, eps) - 0.5 * (_np_entropic_ot(x, x, eps) + _np_entropic_ot(y, y, eps))


def test_sinkhorn_matches_numpy_reference():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(3, 7, 3, generator=g), torch.randn(3, 7, 3, generator=g) + 0.7
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, 5:] = False
    valid[2, 3:] = False
    y[1, 5:] = 1e6  # garbage in the padding
    eps = 0.5
    ours = sinkhorn_divergence(x, y, valid, eps, iters=2000)
    for gi in range(3):
        n = int(valid[gi].sum())
        ref = _np_sinkhorn_divergence(x[gi, :n].numpy(), y[gi, :n].numpy(), eps)
        assert abs(ours[gi].item() - ref) < 1e-5


def test_sinkhorn_symmetric_zero_on_identical_and_gradient():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 3, generator=g, requires_grad=True)
    y = (torch.randn(2, 6, 3, generator=g) * 1.5).requires_grad_(True)
    valid = torch.ones(2, 6, dtype=torch.bool)
    a = sinkhorn_divergence(x, y, valid, 0.3, iters=3000)
    b = sinkhorn_divergence(y, x, valid, 0.3, iters=3000)
    assert torch.allclose(a, b, atol=1e-8)
    same = sinkhorn_divergence(x, x.detach().clone(), valid, 0.3, iters=3000)
    assert same.abs().max().item() < 1e-8
    # Envelope-theorem gradient vs central finite differences of the numpy reference.
    a[0].backward()
    xn, yn, h = x.detach().numpy().copy(), y.detach().numpy(), 1e-5
    for idx in [(0, 0, 0), (0, 3, 2), (0, 5, 1)]:
        up, down = xn.copy(), xn.copy()
        up[idx] += h
        down[idx] -= h
        fd = (_np_sinkhorn_divergence(up[0], yn[0], 0.3) - _np_sinkhorn_divergence(down[0], yn[0], 0.3)) / (2 * h)
        assert x.grad[idx].item() == pytest.approx(fd, abs=1e-6)


def _f(t) -> float:
    return float(t.detach())


def _highway(lin, x):
    h = lin(x)
    return torch.sigmoid(h) * F.relu(h) + (1 - torch.sigmoid(h)) * x


def _loop_ct(aligner: CTAligner, k, q, mask):
    """CT written as plain loops over layers, examples, heads and valid tokens only."""
    per_layer = []
    for n in range(k.shape[0]):
        c = aligner.critic
        nav = aligner.navigator
        hw, c1, c2 = c.highway.lin.layer(n), c.hidden.layer(n), c.out.layer(n)
        n1, n2 = nav.hidden.layer(n), nav.out.layer(n)
        tau = lambda v: F.normalize(c2(F.relu(c1(_highway(hw, v)))), dim=-1, eps=1e-6)  # noqa: E731
        phi = lambda v: F.normalize(n2(F.relu(n1(v))), dim=-1, eps=1e-6)  # noqa: E731
        values = []
        for b in range(k.shape[1]):
            length = int(mask[b].sum())
            if aligner.axis == "tokens":
                groups = [(k[n, b, h, :length], q[n, b, h, :length]) for h in range(k.shape[2])]
            else:
                groups = [(k[n, b, :, t], q[n, b, :, t]) for t in range(length)]
            group_values = []
            for ks, qs in groups:
                m = len(ks)
                tk, tq, pk, pq = tau(ks), tau(qs), phi(ks), phi(qs)
                total_fwd, total_bwd = 0.0, 0.0
                for j in range(m):
                    weights = [math.exp(_f(pk[i] @ pq[j])) for i in range(m)]
                    z = sum(weights)
                    total_fwd += sum((1 - _f(tk[i] @ tq[j])) * weights[i] / z for i in range(m))
                for i in range(m):
                    weights = [math.exp(_f(pk[i] @ pq[j])) for j in range(m)]
                    z = sum(weights)
                    total_bwd += sum((1 - _f(tk[i] @ tq[j])) * weights[j] / z for j in range(m))
                group_values.append((1 - aligner.rho) * total_fwd / m + aligner.rho * total_bwd / m)
            values.append(group_values)
        if aligner.axis == "tokens":
            per_layer.append(np.mean([v for vs in values for v in vs]))
        else:
            per_layer.append(np.mean([np.mean(vs) for vs in values]))
    return np.array(per_layer)


@pytest.mark.parametrize("axis", ["tokens", "heads"])
def test_ct_equals_loop_implementation(axis):
    k, q, mask = _inputs(n=2, b=3, h=3, length=5, d=4, seed=4)
    name = "ct" if axis == "tokens" else "ct-heads"
    aligner = _aligner(name, n=2, d=4, rho=0.3)
    ours = aligner(k, q, mask).detach().numpy()
    assert np.allclose(ours, _loop_ct(aligner, k, q, mask), atol=1e-6, rtol=0)


def test_combine_is_sum_of_its_parts():
    k, q, mask = _inputs()
    aligner = _aligner("combine")
    expected = aligner.tokens(k, q, mask) + aligner.heads(k, q, mask)
    assert torch.allclose(aligner(k, q, mask), expected)


def _loop_gan(aligner: GanAligner, k, q, mask):
    d = aligner.disc
    out = []
    for n in range(k.shape[0]):
        hw, l1, l2 = d.highway.lin.layer(n), d.hidden.layer(n), d.out.layer(n)
        disc = lambda v: l2(F.relu(l1(_highway(hw, v)))).squeeze(-1)  # noqa: E731
        vals = []
        for b in range(k.shape[1]):
            length = int(mask[b].sum())
            for h in range(k.shape[2]):
                real, fake = disc(k[n, b, h, :length]), disc(q[n, b, h, :length])
                bce = F.binary_cross_entropy_with_logits
                vals.append(_f(bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))))
        out.append(np.mean(vals))
    return np.array(out)


def test_gan_equals_loop_with_torch_bce():
    k, q, mask = _inputs(seed=5)
    aligner = _aligner("gan")
    assert np.allclose(aligner(k, q, mask).detach().numpy(), _loop_gan(aligner, k, q, mask), atol=1e-10)
    per_head = _aligner("gan", per_head=True)
    per_head.fit_heads(2)
    per_head.double()
    assert torch.allclose(per_head(k, q, mask), _loop_gan_players(per_head, k, q, mask)["aux"], atol=1e-10)


def _loop_gan_players(aligner: GanAligner, k, q, mask):
    """Both players' losses per layer as plain loops with torch's BCE (autograd, no fusion):
    the discriminator's BCE(D(k), 1) + BCE(D(q), 0) and its accuracy, the encoder's BCE(D(k), 0)
    (non-saturating) and −BCE(D(k), 1) (saturating). Each layer's Linear is written out as
    v @ W[n] + b[n], so the autograd gradients reach the stacked parameters."""
    d = aligner.disc
    bce = F.binary_cross_entropy_with_logits
    out = {"aux": [], "accuracy": [], "encoder": [], "saturating": []}
    heads = k.shape[2]
    for n in range(k.shape[0]):
        def lin(stacked, v, s):
            return v @ stacked.weight[s] + stacked.bias[s, 0]

        def disc(v, h):
            s = n * heads + h if aligner.per_head else n  # per_head: the stack of layer n, head h
            pre = lin(d.highway.lin, v, s)
            highway = torch.sigmoid(pre) * F.relu(pre) + (1 - torch.sigmoid(pre)) * v
            return lin(d.out, F.relu(lin(d.hidden, highway, s)), s).squeeze(-1)

        rows = {key: [] for key in out}
        for b in range(k.shape[1]):
            length = int(mask[b].sum())
            for h in range(k.shape[2]):
                real, fake = disc(k[n, b, h, :length], h), disc(q[n, b, h, :length], h)
                rows["aux"].append(bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))
                rows["accuracy"].append(((real > 0).double().mean() + (fake < 0).double().mean()) / 2)
                rows["encoder"].append(bce(real, torch.zeros_like(real)))
                rows["saturating"].append(-bce(real, torch.ones_like(real)))
        for key in out:
            out[key].append(torch.stack(rows[key]).mean())
    return {key: torch.stack(values) for key, values in out.items()}


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("layout", ["heads-major", "tokens-major"])
@pytest.mark.parametrize("padded", [True, False])
def test_gan_players_fused_gradients_equal_plain_autograd(layout, padded, per_head):
    # The fused discriminator loss (chunks of 5 rows, gradient by hand) against autograd through
    # plain loops: both values, the accuracy, the discriminator's parameter gradients from its own
    # loss and the keys' gradient from the encoder's loss; padding with garbage, two memory layouts.
    k, q, mask = _inputs(n=2, b=3, h=2, length=6, d=4, seed=11)
    if not padded:
        mask = torch.ones_like(mask)
    pad = (mask == 0)[None, :, None, :, None].expand_as(k)
    k, q = k.masked_fill(pad, 1e4), q.masked_fill(pad, float("nan"))
    if layout == "tokens-major":  # as the capture stacks the projections: [N, B, L, H, d] in memory
        k, q = k.transpose(2, 3).contiguous().transpose(2, 3), q.transpose(2, 3).contiguous().transpose(2, 3)
        assert k.transpose(2, 3).is_contiguous() and not k.is_contiguous()
    aligner = _aligner("gan", n=2, d=4, seed=12, r1=0.0, per_head=per_head)  # the penalty has its own test below
    aligner.fit_heads(2)
    aligner.double()
    assert aligner.disc.out.weight.shape[0] == (4 if per_head else 2)  # a stack per (layer, head) or per layer
    params = list(aligner.parameters())
    ref = _loop_gan_players(aligner, k, q, mask)
    ref_aux, ref_acc, ref_enc = ref["aux"], ref["accuracy"], ref["encoder"]
    ref_param_grads = torch.autograd.grad(ref_aux.sum(), params)

    value, accuracy = kernels.discriminator_loss(aligner.disc, [(k, mask, 1.0, -1.0), (q, mask, 1.0, 1.0)], chunk=5,
                                                 per_head=per_head)
    assert torch.allclose(value, ref_aux, atol=1e-12) and torch.allclose(accuracy / 2, ref_acc, atol=1e-12)
    ours_aux, ours_acc = aligner.aux_loss(k, q, mask)
    assert torch.allclose(ours_aux, ref_aux, atol=1e-12) and torch.allclose(ours_acc, ref_acc, atol=1e-12)
    weights = torch.tensor([0.7, -1.3])  # per-layer output weights reach each layer's parameters
    ours_grads = torch.autograd.grad((ours_aux * weights).sum(), params, retain_graph=True)
    ref_grads = torch.autograd.grad((_loop_gan_players(aligner, k, q, mask)["aux"] * weights).sum(), params)
    for ours, ref in zip(ours_grads, ref_grads):
        assert torch.allclose(ours, ref, atol=1e-12)
    assert all(torch.allclose(a, b) for a, b in zip(torch.autograd.grad(ours_aux.sum(), params), ref_param_grads))

    kk = k.clone().requires_grad_(True)
    for p in params:
        p.requires_grad_(False)  # the encoder's loss is built with the discriminator held fixed
    ours_enc = aligner.encoder_loss(kk, q, mask)
    assert torch.allclose(ours_enc, ref_enc, atol=1e-12)
    (grad_k,) = torch.autograd.grad((ours_enc * weights).sum(), kk)
    kr = k.clone().requires_grad_(True)
    (ref_k,) = torch.autograd.grad((_loop_gan_players(aligner, kr, q, mask)["encoder"] * weights).sum(), kr)
    assert torch.allclose(grad_k, ref_k, atol=1e-12)
    assert torch.all(grad_k[pad] == 0)


def test_gan_feature_matching_equals_a_per_example_per_head_loop():
    """generator=feature-matching: Σ_f (mean_i f(k_i) − mean_j f(q_j))² per example and head, f the
    discriminator's hidden features (highway, hidden, ReLU; no dropout), over valid tokens only,
    averaged over examples and heads; only the keys get a gradient, padding none at all."""
    k, q, mask = _inputs(seed=9)
    k[:, 2, :, 2:] = float("nan")  # garbage in the padding must not leak
    k, q = k.requires_grad_(True), q.requires_grad_(True)
    aligner = _aligner("gan", generator="feature-matching", dropout=0.5).train()  # dropout is not used
    d = aligner.disc
    expected = []
    for n in range(k.shape[0]):
        hw, l1 = d.highway.lin.layer(n), d.hidden.layer(n)
        feats = lambda v: F.relu(l1(_highway(hw, v)))  # noqa: E731
        gaps = []
        for b in range(k.shape[1]):
            length = int(mask[b].sum())
            for h in range(k.shape[2]):
                mk, mq = feats(k[n, b, h, :length]).mean(0), feats(q[n, b, h, :length]).mean(0)
                gaps.append(_f(((mk - mq) ** 2).sum()))
        expected.append(np.mean(gaps))
    value = aligner.encoder_loss(k, q, mask)
    assert np.allclose(value.detach().numpy(), expected, atol=1e-12)
    value.sum().backward()
    assert q.grad is None or not q.grad.any()
    assert torch.isfinite(k.grad).all() and not k.grad[:, 2, :, 2:].any() and k.grad[:, 0].abs().sum() > 0
    same = aligner.encoder_loss(q.detach(), q.detach(), mask)
    assert torch.equal(same, torch.zeros_like(same))  # keys equal to their queries: no gap
    with pytest.raises(UsageError, match="per_head"):
        build_aligner("gan", 2, 4, generator="feature-matching", per_head=True)


def test_gan_saturating_encoder_loss_and_fused_dropout_rate():
    k, q, mask = _inputs(seed=13)
    aligner = _aligner("gan", generator="saturating")
    kk, kr = k.clone().requires_grad_(True), k.clone().requires_grad_(True)
    ours = aligner.encoder_loss(kk, q, mask)
    ref = _loop_gan_players(aligner, kr, q, mask)["saturating"]
    assert torch.allclose(ours, ref, atol=1e-12)
    (ours_k,), (ref_k,) = torch.autograd.grad(ours.sum(), kk), torch.autograd.grad(ref.sum(), kr)
    assert torch.allclose(ours_k, ref_k, atol=1e-12)
    # With dropout on, the fused path draws keep masks from the aligner's own generator at rate p:
    # a discriminator whose highway is the identity (h ≪ 0) and whose logit is the first input
    # coordinate after dropout shows the mask in its sign.
    torch.manual_seed(0)
    drop = build_aligner("gan", 1, 4, dropout=0.25).double().train()
    drop.seed(5)
    with torch.no_grad():
        drop.disc.highway.lin.weight.zero_()
        drop.disc.highway.lin.bias.fill_(-50.0)  # σ(h) ≈ 0: highway(x) = x
        drop.disc.hidden.weight.zero_()
        drop.disc.hidden.weight[0, 0, 0] = 1.0  # hidden unit 0 = the first input coordinate
        drop.disc.hidden.bias.zero_()
        drop.disc.out.weight.zero_()
        drop.disc.out.weight[0, 0, 0] = 1.0
        drop.disc.out.bias.zero_()
    ones = torch.ones(1, 1, 1, 4000, 4)
    full = torch.ones(1, 4000, dtype=torch.long)
    before = torch.get_rng_state()
    _, hits = kernels.discriminator_loss(drop.disc, [(ones, full, 1.0, -1.0)], chunk=512)
    assert torch.equal(torch.get_rng_state(), before)  # the backbone's dropout stream is untouched
    # logit = keep/(1−p) > 0 exactly when the first coordinate is kept: hits = kept fraction
    assert abs(hits.item() - 0.75) < 0.03


def _loop_r1(aligner: GanAligner, q, mask):
    """½·mean over the valid query rows of ‖∇_x D(x)‖², per layer, by autograd through each layer's
    own nn.Linear copies (one row at a time: an independent reference for the batched penalty)."""
    d = aligner.disc
    out = []
    for n in range(q.shape[0]):
        norms = []
        for b in range(q.shape[1]):
            for h in range(q.shape[2]):
                s = n * q.shape[2] + h if aligner.per_head else n
                hw, l1, l2 = d.highway.lin.layer(s), d.hidden.layer(s), d.out.layer(s)
                for i in range(int(mask[b].sum())):
                    x = q[n, b, h, i].clone().requires_grad_(True)
                    (g,) = torch.autograd.grad(l2(F.relu(l1(_highway(hw, x)))).sum(), x)
                    norms.append(float(g.square().sum()))
        out.append(0.5 * np.mean(norms))
    return np.array(out)


def test_gan_r1_penalty_equals_a_per_row_reference_and_reaches_only_the_discriminator():
    # R1 (½·E‖∇D‖² at the queries, weight γ) is added to the discriminator's own loss: checked
    # against a per-row autograd reference over every valid query (fewer than R1_ROWS here, so no
    # subsample); its parameter gradient is finite and nonzero; the global RNG is untouched
    k, q, mask = _inputs(seed=21)
    plain, penalised = _aligner("gan", seed=3, r1=0.0), _aligner("gan", seed=3, r1=2.5)
    penalised.seed(0)
    before = torch.get_rng_state()
    value, _ = penalised.aux_loss(k, q, mask)
    assert torch.equal(torch.get_rng_state(), before)
    expected = plain.aux_loss(k, q, mask)[0].detach().numpy() + 2.5 * _loop_r1(plain, q, mask)
    assert np.allclose(value.detach().numpy(), expected, atol=1e-10)
    grads = torch.autograd.grad(value.sum() - plain.aux_loss(k, q, mask)[0].sum(), list(penalised.parameters()),
                                allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    # the encoder's side does not see it
    assert torch.allclose(penalised.encoder_loss(k, q, mask), plain.encoder_loss(k, q, mask))


def test_gan_r1_per_head_takes_each_heads_own_discriminator():
    k, q, mask = _inputs(seed=21)
    plain, penalised = _aligner("gan", seed=3, r1=0.0, per_head=True), _aligner("gan", seed=3, r1=2.5, per_head=True)
    for a in (plain, penalised):
        torch.manual_seed(4)  # the per-head stacks are drawn afresh: the same draw for both
        a.fit_heads(2)
        a.double()
    value, _ = penalised.aux_loss(k, q, mask)
    expected = plain.aux_loss(k, q, mask)[0].detach().numpy() + 2.5 * _loop_r1(plain, q, mask)
    assert np.allclose(value.detach().numpy(), expected, atol=1e-10)


def test_gan_r1_subsamples_rows_without_replacement_from_its_own_stream(monkeypatch):
    monkeypatch.setattr(gan, "R1_ROWS", 7)
    k, q, mask = _inputs(seed=22)
    aligner = _aligner("gan", seed=3)
    aligner.seed(4)
    first = aligner._r1_penalty(q, mask)
    aligner.seed(4)
    assert torch.equal(aligner._r1_penalty(q, mask), first)  # seeded: the same rows again
    assert not torch.equal(aligner._r1_penalty(q, mask), first)  # the stream moves on


def _loop_subsample_reference(aligner: GanAligner, k, q, mask, picks):
    """The discriminator's loss on the given valid rows only, each weighted as in the full token mean
    and scaled by total/limit, by plain autograd over each layer's own modules (independent of the
    fused chunks and of `sample_rows`)."""
    d = aligner.disc
    out = []
    for n in range(k.shape[0]):
        hw, l1, l2 = d.highway.lin.layer(n), d.hidden.layer(n), d.out.layer(n)
        total = 0.0
        for x, sign, pick in ((k, -1.0, picks[0]), (q, 1.0, picks[1])):
            rows = [(b, h, i) for b in range(x.shape[1]) for h in range(x.shape[2]) for i in range(int(mask[b].sum()))]
            scale = len(rows) / len(pick)
            for r in pick:
                b, h, i = rows[r]
                weight = 1.0 / (int(mask[b].sum()) * x.shape[2] * x.shape[1])
                total = total + scale * weight * F.softplus(sign * l2(F.relu(l1(_highway(hw, x[n, b, h, i]))))).sum()
        out.append(total)
    return torch.stack(out)


def test_gan_discriminator_updates_train_on_a_seeded_row_subsample(monkeypatch):
    # With more valid rows than aux_rows, each update's loss is the full token mean's estimate on aux_rows
    # rows drawn without replacement from the aligner's own stream (weights scaled by total/limit, so it
    # is unbiased); with enough room nothing is drawn and the loss is the full mean.
    k, q, mask = _inputs(seed=24)  # 3 examples × 2 heads, 6 + 4 + 2 valid tokens: 24 rows per layer
    full = _aligner("gan", seed=3, r1=0.0)
    sampled = _aligner("gan", seed=3, r1=0.0, aux_rows=5)
    roomy = _aligner("gan", seed=3, r1=0.0, aux_rows=24)
    for a in (sampled, roomy):
        a.seed(9)
    before = torch.get_rng_state()
    assert torch.equal(roomy.aux_loss(k, q, mask)[0], full.aux_loss(k, q, mask)[0])
    seed = 9 + 1  # the stream after the discriminator's dropout (`Aligner.seed`)
    assert torch.equal(roomy.draws.generator.get_state(), torch.Generator().manual_seed(seed).get_state())
    value = sampled.aux_loss(k, q, mask)[0]
    assert torch.equal(torch.get_rng_state(), before)  # the backbone's stream is untouched
    stream = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(24, generator=stream)[:5].sort().values.tolist() for _ in range(2)]
    assert all(len(set(p)) == 5 for p in picks)
    assert torch.allclose(value, _loop_subsample_reference(sampled, k, q, mask, picks), atol=1e-12)
    sampled.seed(9)
    assert torch.equal(sampled.aux_loss(k, q, mask)[0], value)  # seeded: the same rows again
    assert not torch.equal(sampled.aux_loss(k, q, mask)[0], value)  # the stream moves on
    # unbiased: the mean over many draws approaches the full mean
    draws = torch.stack([sampled.aux_loss(k, q, mask)[0] for _ in range(3000)]).mean(0)
    assert torch.allclose(draws, full.aux_loss(k, q, mask)[0], rtol=0.02)


def test_spectral_projection_bounds_every_layers_operator_norm():
    torch.manual_seed(0)
    lin = blocks.StackedLinear(3, 8, 5)
    with torch.no_grad():
        lin.weight.mul_(torch.tensor([10.0, 0.01, 3.0])[:, None, None])
    small = lin.weight[1].clone()
    blocks.project_spectral([lin], 1.5)
    sigma = torch.linalg.svdvals(lin.weight).max(-1).values
    assert torch.allclose(sigma[[0, 2]], torch.tensor(1.5))
    assert torch.equal(lin.weight[1], small)  # already inside the bound: unchanged
    aligner = _aligner("gan", lipschitz=0.5)
    aligner.constrain()
    assert all(float(torch.linalg.svdvals(m.weight.detach()).max()) <= 0.5 + 1e-9 for m in aligner.disc.linears())
    ct = _aligner("ct", lipschitz=0.5)
    ct.constrain()
    assert all(float(torch.linalg.svdvals(m.weight.detach()).max()) <= 0.5 + 1e-9 for m in ct.critic.linears())


def test_gan_instance_noise_comes_from_its_own_stream():
    k, q, mask = _inputs(seed=23)
    clean, noisy = _aligner("gan", seed=3, r1=0.0), _aligner("gan", seed=3, r1=0.0, noise=0.5)
    noisy.seed(1)
    before = torch.get_rng_state()
    value = noisy.aux_loss(k, q, mask)[0]
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.allclose(value, clean.aux_loss(k, q, mask)[0])
    noisy.seed(1)
    assert torch.equal(noisy.aux_loss(k, q, mask)[0], value)


@pytest.mark.parametrize("option", [{"r1": -1}, {"lipschitz": float("nan")}, {"noise": "a"}, {"r1": True},
                                    {"aux_rows": -1}, {"aux_rows": 1.5}])
def test_bad_gan_stabiliser_options_are_refused(option):
    with pytest.raises(UsageError, match="gan"):
        build_aligner("gan", 1, 4, **option)


def test_adversaries_default_to_several_updates_per_step():
    assert build_aligner("gan", 1, 4).aux_steps == gan.GAN_DISC_STEPS > 1
    assert build_aligner("mmd", 1, 4).aux_steps == 1  # no auxiliary networks: nothing to update
    assert all(build_aligner(v, 1, 4).aux_steps == ct.CRITIC_STEPS > 1 for v in ("ct", "ct-heads", "combine"))


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_padding_garbage_changes_nothing(name):
    k, q, mask = _inputs(seed=6)
    aligner = _aligner(name)
    pad = (mask == 0)[None, :, None, :, None].expand_as(k)
    garbage_k, garbage_q = k.clone(), q.clone()
    garbage_k[pad] = 1e4 * torch.randn(int(pad.sum()))
    garbage_q[pad] = float("nan")
    kc, qc = k.clone().requires_grad_(True), q.clone().requires_grad_(True)
    kg, qg = garbage_k.requires_grad_(True), garbage_q.requires_grad_(True)
    clean, dirty = aligner(kc, qc, mask), aligner(kg, qg, mask)
    assert torch.allclose(clean, dirty, atol=1e-10)
    clean.sum().backward()
    dirty.sum().backward()
    for clean_grad, dirty_grad in ((kc.grad, kg.grad), (qc.grad, qg.grad)):
        if clean_grad is None:  # gan detaches the queries
            assert dirty_grad is None
            continue
        assert torch.allclose(clean_grad, dirty_grad, atol=1e-10)
        assert torch.all(dirty_grad[pad] == 0)
    # And a padded example gives what the same example gives unpadded on its own.
    alone = aligner(k[:, 1:2, :, :4], q[:, 1:2, :, :4], mask[1:2, :4])
    padded = aligner(k[:, 1:2], garbage_q[:, 1:2], mask[1:2])
    assert torch.allclose(alone, padded, atol=1e-10)


# ----------------------------------------------------------------------------- gradient reversal


class _OneLayer(torch.nn.Module):
    """x -> (Wq x, Wk x) split into heads, stacked as a 1-layer [1, B, H, L, d] pair."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.wq, self.wk = torch.nn.Linear(dim, dim), torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, length, dim = x.shape
        split = lambda t: t.view(b, length, self.heads, -1).transpose(1, 2)[None]  # noqa: E731
        return split(self.wk(x)), split(self.wq(x))


def _loss_after_step(params, grads, step, fn):
    with torch.no_grad():
        saved = [p.clone() for p in params]
        for p, g in zip(params, grads):
            p.sub_(step * g)
        value = fn().item()
        for p, s in zip(params, saved):
            p.copy_(s)
    return value


@pytest.mark.parametrize("name", ["gan", "ct", "ct-heads", "combine"])
def test_gradient_reversal_signs(name):
    torch.manual_seed(7)
    proj = _OneLayer()
    aligner = _aligner(name, n=1, d=4)
    x = torch.randn(3, 6, 8)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[2, 4:] = 0

    def loss():
        k, q = proj(x)
        return aligner(k, q, mask).mean()

    proj.zero_grad()
    aligner.zero_grad()
    base = loss()
    base.backward()
    step = 1e-4
    key_params = [proj.wk.weight, proj.wk.bias]
    key_grads = [p.grad.clone() for p in key_params]
    if name == "gan":
        adv_params = list(aligner.parameters())  # the discriminator minimizes the BCE
        assert proj.wq.weight.grad is None  # queries are detached in the gan game
        # Descending the reported gradient: the discriminator lowers the loss, the key projection raises it.
        aux_change = _loss_after_step(adv_params, [p.grad for p in adv_params], step, loss) - base.item()
        key_change = _loss_after_step(key_params, key_grads, step, loss) - base.item()
        assert aux_change < 0 < key_change
        return
    critics = [m for m in aligner.modules() if isinstance(m, blocks.Critic)]
    navigators = [m for m in aligner.modules() if isinstance(m, blocks.Navigator)]
    adv_params = [p for c in critics for p in c.parameters()]
    friendly = [p for nav in navigators for p in nav.parameters()]
    # The critic climbs CT; the projections and (CT-paper rule) the navigator descend it.
    critic_change = _loss_after_step(adv_params, [p.grad for p in adv_params], step, loss) - base.item()
    key_change = _loss_after_step(key_params, key_grads, step, loss) - base.item()
    nav_change = _loss_after_step(friendly, [p.grad for p in friendly], step, loss) - base.item()
    assert critic_change > 0 > key_change
    assert nav_change < 0


def test_reversal_is_exact_negation():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (blocks.grad_reverse(x) * w).sum().backward()
    assert torch.equal(x.grad, -w)
    x.grad = None
    (blocks.adversarial(lambda t: 2 * t, x) * w).sum().backward()
    assert torch.equal(x.grad, 2 * w)  # reversed twice: the input sees the plain gradient


def test_adversarial_navigator_option_climbs():
    torch.manual_seed(8)
    proj = _OneLayer()
    aligner = _aligner("ct", n=1, d=4, navigator="adversarial")
    x = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.long)

    def loss():
        k, q = proj(x)
        return aligner(k, q, mask).mean()

    base = loss()
    base.backward()
    nav = list(aligner.navigator.parameters())
    assert _loss_after_step(nav, [p.grad for p in nav], 1e-4, loss) > base.item()
    with pytest.raises(UsageError):
        build_aligner("ct", 1, 4, navigator="sideways")


def _plain_mmd_sums(x, y, valid, med, scales):
    """(Σ_{i≠j} h_ij over valid pairs, the number of those pairs) of the paired U-statistic, in plain
    autograd ops (no custom backward); med [G]."""
    d = lambda a, b: ((a[:, :, None] - b[:, None]) ** 2).sum(-1)  # noqa: E731
    k = lambda dd: sum(torch.exp(-dd / (s * med[:, None, None])) for s in scales)  # noqa: E731
    v = valid.to(x.dtype)
    w = v[:, :, None] * v[:, None, :] * (1 - torch.eye(x.shape[1], dtype=x.dtype))
    h = k(d(x, x)) + k(d(y, y)) - k(d(x, y)) - k(d(x, y)).transpose(-1, -2)
    return (h * w).sum((-1, -2)), w.sum((-1, -2))


def _plain_mmd(x, y, valid, med, scales):
    """The paired U-statistic written with plain autograd ops (no custom backward)."""
    total, pairs = _plain_mmd_sums(x, y, valid, med, scales)
    return total / pairs


@pytest.mark.parametrize("scales", [kernels.MMD_SCALES, (0.3, 1.0, 3.5)])
def test_mmd_analytic_gradient_matches_autograd(scales):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(5, 7, 3, generator=g, requires_grad=True)
    y = (torch.randn(5, 7, 3, generator=g) + 0.4).requires_grad_(True)
    valid = torch.ones(5, 7, dtype=torch.bool)
    valid[2, 4:] = False
    weights = torch.randn(5, generator=g)
    ours, _ = mmd2_unbiased(x, y, valid, scales)
    med = kernels.median_bandwidth(x.detach(), y.detach(), valid)
    plain = _plain_mmd(torch.where(valid[..., None], x, 0), torch.where(valid[..., None], y, 0), valid, med, scales)
    assert torch.allclose(ours, plain, atol=1e-12)
    gx, gy = torch.autograd.grad((ours * weights).sum(), (x, y))
    px, py = torch.autograd.grad((plain * weights).sum(), (x, y))
    assert torch.allclose(gx, px, atol=1e-10) and torch.allclose(gy, py, atol=1e-10)


def test_median_bandwidth_sample_is_close_to_exact_on_long_clouds():
    g = torch.Generator().manual_seed(10)
    x, y = torch.randn(4, 200, 8, generator=g), torch.randn(4, 200, 8, generator=g)
    valid = torch.ones(4, 200, dtype=torch.bool)
    valid[1, 150:] = False
    sampled = kernels.median_bandwidth(x, y, valid)
    exact = kernels.median_bandwidth(x, y, valid, sample=10_000)
    assert torch.allclose(sampled, exact, rtol=0.1)


def test_median_bandwidth_sample_equals_loop_definition():
    # Long clouds: the median over the 32 × 32 key–query pairs at the (i·n // 32)-th valid positions,
    # written as a loop over each group's list of valid positions (padding anywhere, not only at the end).
    g = torch.Generator().manual_seed(14)
    x, y = torch.randn(5, 90, 3, generator=g), torch.randn(5, 90, 3, generator=g)
    valid = torch.rand(5, 90, generator=g) > 0.3
    valid[1] = True
    valid[2, 40:] = False
    x, y = torch.where(valid[..., None], x, 0.0), torch.where(valid[..., None], y, 0.0)
    ours = kernels.median_bandwidth(x, y, valid)
    for i in range(5):
        positions = valid[i].nonzero().squeeze(-1).tolist()
        picks = [positions[j * len(positions) // 32] for j in range(32)]
        d = sorted(float(((x[i, a] - y[i, b]) ** 2).sum()) for a in picks for b in picks)
        assert ours[i].item() == pytest.approx(d[(len(d) - 1) // 2], rel=1e-12)  # the lower median, as torch's


def test_seeded_dropout_leaves_the_global_rng_alone():
    drop = blocks.SeededDropout(0.25).train()
    x = torch.ones(4000)
    before = torch.get_rng_state()
    drop.generator = torch.Generator().manual_seed(3)
    first = drop(x)
    drop.generator = torch.Generator().manual_seed(3)
    second = drop(x)
    assert torch.equal(torch.get_rng_state(), before)  # the backbone's dropout stream is untouched
    assert torch.equal(first, second)
    assert set(first.unique().tolist()) == {0.0, 1.0 / 0.75}
    assert abs((first == 0).double().mean().item() - 0.25) < 0.03
    assert torch.equal(drop.eval()(x), x)


# ----------------------------------------------------------------------------- block U-statistic


def _plain_block_mmd(x, y, valid, block, scales):
    """The block estimator by hand: consecutive blocks of ceil(L / ceil(L / block)) positions, each
    block's paired U-statistic (`_plain_mmd_sums`, the whole example's bandwidth), averaged with
    weights n_b(n_b − 1)."""
    length = x.shape[1]
    size = -(-length // -(-length // block))
    med = kernels.median_bandwidth(x.detach(), y.detach(), valid)
    total, pairs = 0.0, 0.0
    for start in range(0, length, size):
        part = slice(start, start + size)
        block_total, block_pairs = _plain_mmd_sums(x[:, part], y[:, part], valid[:, part], med, scales)
        total, pairs = total + block_total, pairs + block_pairs
    return total / pairs.clamp_min(1.0)


@pytest.mark.parametrize("length, block", [(12, 4), (13, 4), (9, 5)])
def test_block_mmd_matches_the_per_block_reference_and_its_gradient(length, block):
    g = torch.Generator().manual_seed(21)
    heads = 3
    x = torch.randn(4, heads, length, 2, generator=g, requires_grad=True)
    y = (torch.randn(4, heads, length, 2, generator=g) + 0.3).requires_grad_(True)
    valid = torch.ones(4, length, dtype=torch.bool)
    valid[1, length - 5:] = False  # right padding: blocks of unequal fill, the last one may be empty
    valid[2, 2:] = False  # two tokens: one block of two, the others empty
    ours, usable = kernels.mmd2_groups(x, y, valid, kernels.MMD_SCALES, block=block)
    assert usable.all()
    flat = lambda t: t.reshape(-1, length, 2)  # noqa: E731  groups (m, h), heads sharing the mask
    ref = _plain_block_mmd(flat(x), flat(y), valid.repeat_interleave(heads, 0), block, kernels.MMD_SCALES)
    assert torch.allclose(ours, ref, atol=1e-12)
    weights = torch.randn(ours.shape, generator=g)
    gx, gy = torch.autograd.grad((ours * weights).sum(), (x, y))
    px, py = torch.autograd.grad((ref * weights).sum(), (x, y))
    assert torch.allclose(gx, px, atol=1e-10) and torch.allclose(gy, py, atol=1e-10)


def test_block_mmd_leaves_inputs_of_at_most_block_tokens_alone_and_block_zero_means_all_pairs():
    k, q, mask = _inputs(n=1)
    length = k.shape[3]
    full = _aligner("mmd", n=1, block=0)(k, q, mask)
    assert torch.equal(_aligner("mmd", n=1, block=length)(k, q, mask), full)
    assert not torch.allclose(_aligner("mmd", n=1, block=2)(k, q, mask), full)


@pytest.mark.parametrize("block", [-1, 1, 2.5, True, "64"])
def test_block_mmd_refuses_a_block_that_is_not_a_token_count(block):
    with pytest.raises(UsageError, match="mmd block"):
        build_aligner("mmd", 1, 4, block=block)
