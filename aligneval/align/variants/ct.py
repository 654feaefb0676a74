"""The conditional-transport family: ct (within each head, across tokens), ct-heads (across heads, at
each token) and combine (both), each with an adversarial critic and a navigator per layer."""

from __future__ import annotations

import math

import torch

from aligneval.align.blocks import AUX_WIDTH, Critic, Navigator, adversarial, project_spectral, token_mask, \
    valid_tokens, weighted_token_mean, zero_padding
from aligneval.align.kernels import conditional_transport
from aligneval.align.variants import Aligner, register_variant
from aligneval.errors import UsageError

NAVIGATOR_RULES = ("ct", "adversarial")
# critic and navigator updates per model step (n_critic of WGAN practice): with one, ct's critic falls behind
# the projections and the twin ends anywhere from 0.38× to 1.48× the baseline's K–Q gap (docs/align.md)
CRITIC_STEPS = 3


class CTAligner(Aligner):
    """ct / ct-heads: conditional transport with an adversarial critic τ and a navigator φ.

    axis="tokens" matches each head's L keys against its L queries (C is [N, B, H, L, L]);
    axis="heads" matches the H keys against the H queries at each token (C is [N, B, L, H, H]),
    the released code's active branch. The critic maximizes CT (behind gradient reversal); the
    navigator minimizes it with the projections (navigator="ct", the CT paper's rule) or maximizes
    it with the critic (navigator="adversarial", the authors' alignment code).
    """

    adversarial = True
    diagnostic = "critic_value"
    aux_steps = CRITIC_STEPS

    def __init__(
        self, n_layers: int, d_head: int, width: int = AUX_WIDTH, rho: float = 0.5,
        axis: str = "tokens", navigator: str = "ct", lipschitz: float = 0.0,
    ):
        super().__init__()
        if not isinstance(lipschitz, (int, float)) or isinstance(lipschitz, bool) or not math.isfinite(lipschitz) \
                or lipschitz < 0:
            raise UsageError(f"ct lipschitz must be a number >= 0 (0: off), not {lipschitz!r}")
        self.lipschitz = float(lipschitz)
        if axis not in ("tokens", "heads"):
            raise UsageError(f"ct axis must be 'tokens' or 'heads', not '{axis}'")
        if navigator not in NAVIGATOR_RULES:
            raise UsageError(f"navigator must be one of {', '.join(NAVIGATOR_RULES)}, not '{navigator}'")
        if not 0.0 <= rho <= 1.0:
            raise UsageError(f"rho must lie in [0, 1], not {rho}")
        self.critic = Critic(n_layers, d_head, width)
        self.navigator = Navigator(n_layers, d_head, width)
        self.rho, self.axis, self.navigator_rule = rho, axis, navigator

    def constrain(self) -> None:
        if self.lipschitz:
            project_spectral(self.critic.linears(), self.lipschitz)

    def features(self, k: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tk, tq = adversarial(self.critic, k), adversarial(self.critic, q)
        if self.navigator_rule == "ct":
            pk, pq = self.navigator(k), self.navigator(q)
        else:
            pk, pq = adversarial(self.navigator, k), adversarial(self.navigator, q)
        return tk, tq, pk, pq

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The reversal layers around the critic (and, by the rule, the navigator) make descending this
        # value each player's move: the critic climbs CT, the CT-paper navigator descends it.
        value = self(k.detach(), q.detach(), mask)
        return value, value.detach()

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # heads-major memory, as torch.stack of per-layer [B, H, L, d_h] views gave before the capture
        # kept the projections' token-major layout: the same reduction order, the same numbers
        k, q = k.contiguous(), q.contiguous()
        if self.axis == "tokens":
            k, q = zero_padding(k, mask), zero_padding(q, mask)
            tk, tq, pk, pq = self.features(k, q)
            valid = token_mask(mask)  # [1, B, 1, L]
            cost = 1.0 - tk @ tq.transpose(-1, -2)  # [N, B, H, L, L]
            scores = pk @ pq.transpose(-1, -2)
            v = valid.expand(*cost.shape[:-1])
            ct = conditional_transport(cost, scores, v, v, self.rho)  # [N, B, H]
            return ct.flatten(1).mean(1)
        return self._across_heads(k, q, mask)

    def _across_heads(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kt, weights = valid_tokens(k, mask)  # [N, T, H, d]
        qt, _ = valid_tokens(q, mask)
        tk, tq, pk, pq = self.features(kt, qt)
        cost = 1.0 - tk @ tq.transpose(-1, -2)  # [N, T, H, H]
        scores = pk @ pq.transpose(-1, -2)
        heads = torch.ones(cost.shape[:-1], dtype=torch.bool, device=cost.device)
        ct = conditional_transport(cost, scores, heads, heads, self.rho)  # [N, T]
        return weighted_token_mean(ct, weights, mask.shape[0])


class CombineAligner(Aligner):
    """combine: ct (within heads) + ct-heads (across heads), each with its own critic and navigator."""

    adversarial = True
    diagnostic = "critic_value"
    aux_steps = CRITIC_STEPS

    def __init__(self, n_layers: int, d_head: int, width: int = AUX_WIDTH, rho: float = 0.5, navigator: str = "ct",
                 lipschitz: float = 0.0):
        super().__init__()
        self.tokens = CTAligner(n_layers, d_head, width, rho, "tokens", navigator, lipschitz)
        self.heads = CTAligner(n_layers, d_head, width, rho, "heads", navigator, lipschitz)

    def constrain(self) -> None:
        self.tokens.constrain()
        self.heads.constrain()

    def aux_loss(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (a, da), (b, db) = self.tokens.aux_loss(k, q, mask), self.heads.aux_loss(k, q, mask)
        return a + b, da + db

    def forward(self, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.tokens(k, q, mask) + self.heads(k, q, mask)


@register_variant("ct", help="conditional transport between each head's keys and queries across tokens, with an "
                  "adversarial critic and a navigator (options: rho, navigator, lipschitz).")
def ct(n_layers: int, d_head: int, **options) -> CTAligner:
    return CTAligner(n_layers, d_head, axis="tokens", **options)


@register_variant("ct-heads", help="conditional transport across the heads at each token, the authors' active branch "
                  "(options as ct).")
def ct_heads(n_layers: int, d_head: int, **options) -> CTAligner:
    return CTAligner(n_layers, d_head, axis="heads", **options)


register_variant("combine", help="ct + ct-heads, each with its own critic and navigator (options as ct).")(CombineAligner)
