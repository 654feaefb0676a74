"""gan: a discriminator per layer tells keys from queries; the key projection learns to fool it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from aligneval.align.blocks import AUX_WIDTH, Discriminator, SeededStream, grad_reverse, grouped_rows, \
    project_spectral, valid_tokens, weighted_token_mean, zero_padding
from aligneval.align.kernels import discriminator_loss
from aligneval.align.variants import Aligner, below_weight, register_variant
from aligneval.errors import UsageError

GENERATOR_FORMS = ("non-saturating", "saturating", "feature-matching")
# R1 weight γ and discriminator updates per model step (docs/align.md, "Stabilising the games"): R1 was chosen
# by measurement against a Lipschitz bound and instance noise; with one update per step the top layers' keys of
# all-MiniLM-L6-v2 still outran the discriminator at λ ≥ 0.3, with five they did not
GAN_R1 = 1.0
GAN_DISC_STEPS = 5
R1_ROWS = 512  # query rows per layer the gradient penalty is taken on, each auxiliary update
# key and query rows per layer each discriminator update trains on (0: all): a fresh draw per update, so the five
# updates see different tokens and cost a fraction of a pass over the batch (docs/align.md, "gan's overhead");
# 2,048 since `below` added a product per key projection: the demo's table is the same to 0.003 as with 4,096
GAN_AUX_ROWS = 2048
GAN_PER_HEAD = False  # one discriminator per (layer, head) rather than per layer (`GanAligner.fit_heads`)
# the term's largest weight in the layers below the key projections (align/reach.py): at λ ≤ 0.1 the paper's
# objective; above it the projections take λ and the layers below 0.1, so gan meets issue 21's table at λ 0.1–3
# on all-MiniLM-L6-v2 (docs/align.md, "The full epoch on the demo model"); "off": λ everywhere
GAN_BELOW = 0.1


@register_variant("gan", help="a discriminator tells keys from queries; keys learn to pass for queries "
                  "(options: generator, lipschitz, r1, noise, aux_rows, per_head, below).")
class GanAligner(Aligner):
    """gan: D_l = BCE(D(GR(k)), 1) + BCE(D(stopgrad(q)), 0), per valid token, mean over tokens/heads.

    D learns to tell keys (1) from queries (0). The key projection plays the generator:
    `generator="non-saturating"` (default, GAN practice) minimizes BCE(D(k), 0), "look like a query",
    whose gradient fades once keys are taken for queries; "saturating" maximizes D's log-loss on the
    keys (the authors' gradient reversal), whose gradient never fades, so keys run to wherever D's
    logit is lowest, past the queries (measured: K–Q MMD 2.05× the baseline's at λ = 1);
    "feature-matching" (Salimans et al. 2016) matches, per example and head, the mean of D's hidden
    features over the keys to that over the queries (`feature_gap`): its gradient vanishes once the
    two means agree, and each head is matched to its own queries, which one discriminator per layer,
    fed the heads pooled, cannot ask of the other forms.
    """

    adversarial = True
    diagnostic = "disc_accuracy"
    aux_steps = GAN_DISC_STEPS

    def __init__(self, n_layers: int, d_head: int, width: int = AUX_WIDTH, dropout: float = 0.1,
                 generator: str = "non-saturating", lipschitz: float = 0.0, r1: float = GAN_R1, noise: float = 0.0,
                 aux_rows: int = GAN_AUX_ROWS, per_head: bool = GAN_PER_HEAD, below: float | str = GAN_BELOW):
        super().__init__()
        if generator not in GENERATOR_FORMS:
            raise UsageError(f"gan generator must be one of {', '.join(GENERATOR_FORMS)}, not '{generator}'")
        for name, value in (("lipschitz", lipschitz), ("r1", r1), ("noise", noise)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise UsageError(f"gan {name} must be a number >= 0 (0: off), not {value!r}")
        if not isinstance(aux_rows, int) or isinstance(aux_rows, bool) or aux_rows < 0:
            raise UsageError(f"gan aux_rows must be a whole number >= 0 (0: every row), not {aux_rows!r}")
        if not isinstance(per_head, bool):
            raise UsageError(f"gan per_head must be true or false, not {per_head!r}")
        if per_head and generator == "feature-matching":
            raise UsageError("gan generator=feature-matching already matches each head to its own queries; "
                             "it does not take per_head=true")
        self.below = below_weight(below)
        self.aux_rows, self.per_head, self.n_layers = aux_rows, per_head, n_layers
        self.disc = Discriminator(n_layers, d_head, width, dropout)
        self.generator_form = generator
        self.lipschitz, self.r1, self.noise = float(lipschitz), float(r1), float(noise)
        self.draws = SeededStream()

    def fit_heads(self, heads: int) -> None:
        """per_head: one discriminator per (layer, head), N·H stacks. One per layer, shared by its heads,
        is satisfied when the keys match the queries pooled over heads, which keys of one head can do by
        moving towards another head's queries (measured on all-MiniLM-L6-v2: docs/align.md)."""
        if self.per_head:
            old = self.disc
            self.disc = Discriminator(self.n_layers * heads, old.highway.lin.weight.shape[1],
                                      old.hidden.weight.shape[2], old.dropout.p).to(old.out.weight)
            self.disc.train(old.training)

    def _stacks(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's input and the weights: valid tokens [N, T·H, d] (one stack per layer) or
        [N·H, T, d] (per_head: one stack per layer and head), and 1/n_b per token [T]."""
        xt, weights = valid_tokens(x, mask)  # [N, T, H, d]
        n, t, h, d = xt.shape
        if self.per_head:
            return xt.permute(0, 2, 1, 3).reshape(n * h, t, d), weights
        return xt.reshape(n, t * h, d), weights

    def constrain(self) -> None:
        if self.lipschitz:
            project_spectral(self.disc.linears(), self.lipschitz)

    def _noisy(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """x + instance noise of std noise·scale (scale per layer [N])."""
        eps = torch.randn(x.shape, generator=self.draws.on(x.device), dtype=x.dtype, device=x.device)
        return x + eps * (self.noise * scale).view(-1, *[1] * (x.dim() - 1))

    def _r1_penalty(self, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """R1 (Mescheder et al. 2018): ½·E‖∇_x D(x)‖² at the queries (the distribution the keys are to
        match), on up to R1_ROWS valid query rows per layer drawn from the player's own stream: D is
        kept flat where the queries are, so its slope cannot send keys past them. [N]"""
        rows, _, index = grouped_rows(q, mask, self.per_head)  # per head: the same positions for every head
        n, groups, _, d = rows.shape
        total = rows.shape[2] if index is None else index.numel()
        limit = max(1, R1_ROWS // groups)
        pick = torch.arange(total, device=q.device)
        if total > limit:  # a subsample without replacement, from the player's own stream
            pick = torch.randperm(total, generator=self.draws.on(q.device), device=q.device)[:limit]
        x = rows.index_select(2, pick if index is None else index[pick]).reshape(n * groups, -1, d)
        x = x.to(self.disc.out.weight.dtype).requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.disc.plain(x).sum(), x, create_graph=True)
        return 0.5 * grad.square().sum(-1).view(n, -1).mean(-1)

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kt, weights = self._stacks(k, mask)  # padding is never computed on
        qt, _ = self._stacks(q, mask)
        logits = self.disc(torch.cat([grad_reverse(kt), qt.detach()], dim=1))  # one pass for both
        real, fake = logits.split(kt.shape[1], dim=1)
        per_token = F.softplus(-real) + F.softplus(fake)  # BCE with targets 1 (keys), 0 (queries)
        n, b, h = k.shape[0], mask.shape[0], k.shape[2]
        per_token = per_token.view(n, h, -1).transpose(1, 2) if self.per_head else per_token.view(n, -1, h)
        return weighted_token_mean(per_token, weights, b)

    # Both players' losses run through `discriminator_loss` (fused, chunked, gradient by hand): the
    # discriminator on every valid token of every head and layer is the whole cost of this variant.

    def feature_gap(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Σ_features (mean_i f(k_i) − mean_j f(q_j))², f = ReLU(hidden(highway(·))) the discriminator's
        hidden features without dropout, means over each example's valid tokens, averaged over examples
        and heads [N]; the queries are held fixed (only the keys play the generator)."""
        dtype = self.disc.out.weight.dtype
        weights = mask.to(dtype) / mask.sum(-1, keepdim=True).clamp_min(1).to(dtype)  # [B, L]
        weights = weights[None, :, None, :, None]

        def mean_features(x):  # [N, B, H, L, d] -> [N, B, H, width]
            f = F.relu(self.disc.hidden(self.disc.highway(zero_padding(x, mask).to(dtype))))
            return (f * weights).sum(-2)

        gap = mean_features(k) - mean_features(q.detach())
        return gap.square().sum(-1).flatten(1).mean(1)

    def encoder_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.generator_form == "feature-matching":
            return self.feature_gap(k, q, mask)
        if self.generator_form == "non-saturating":
            part = (k, mask, 1.0, 1.0)  # softplus(D(k)) = BCE(D(k), 0): keys should be taken for queries
        else:
            part = (k, mask, -1.0, -1.0)  # −softplus(−D(k)) = −BCE(D(k), 1): raise D's log-loss on the keys
        return discriminator_loss(self.disc, [part], per_head=self.per_head)[0]

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # BCE(D(k), 1) + BCE(D(q), 0) = softplus(−D(k)) + softplus(D(q)); the hits are keys called keys
        # (D(k) > 0) and queries called queries (D(q) < 0): the K-vs-Q accuracy
        k, q = k.detach(), q.detach()
        if self.noise:
            scale = q.float().square().mean((1, 2, 3, 4)).sqrt().to(q.dtype)  # per layer: the queries' RMS
            k, q = self._noisy(k, scale), self._noisy(q, scale)
        value, hits = discriminator_loss(self.disc, [(k, mask, 1.0, -1.0), (q, mask, 1.0, 1.0)],
                                         limit=self.aux_rows, generator=self.draws.on(q.device),
                                         per_head=self.per_head)
        if self.r1:
            value = value + self.r1 * self._r1_penalty(q, mask)
        return value, hits / 2

