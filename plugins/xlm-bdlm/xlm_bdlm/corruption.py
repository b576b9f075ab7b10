"""BDLM's corruption: each block of the window masked by a draw of its own, and the NELBO weight of each position.

The collator draws the randomness (one stratified uniform per block, one uniform key per
position; ``xlm_core.nn.nelbo``) and the loss turns it into masks here. The split is
for the clipped schedule: it is a training objective, while evaluation must keep the
whole range of noise levels for the NELBO to stay a bound, and only the loss knows
which of the two it computes (``model.training``). Everything else is MDLM's estimator
applied to a block instead of the window (``nelbo_estimator``):

- ``count``: m masks in 1..B (clipped: m / B in [clip_min, clip_max]) at the positions
  with the m lowest keys, weight B / m;
- ``time``: t in [eps, 1] (clipped: [max(eps, clip_min), clip_max]), a position masked
  when its key is below its masking rate, weight -alpha'/(1 - alpha).

Position-dependent masking (Efficient-DLM) gives position j of a block the schedule at
time ``t^k_j``, ``k_j = exp(2 s (B - 1 - j) / B)``: a monotone bijection of [0, 1], so each
position still runs from clean to masked, earlier positions (k_j > 1) masked later. The
last position has k = 1, so for t in [eps, 1] every position's masking time covers at
least [eps, 1]: a k below 1 would leave part of that position's loss out of the NELBO
(t^k stops at eps^k), and its weight, ``-alpha'(t^k) k t^(k-1) / (1 - alpha(t^k))`` by
the chain rule, would grow faster than 1/t near 0. The ancestral sampler unmasks each
position by its own schedule.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xlm_bdlm.config import BDLMConfig
from xlm_core.nn.nelbo import counts_in, lowest_ranked, times_in
from xlm_core.nn.schedule import NoiseSchedule, make_schedule


class BlockSchedule:
    """The noise schedule of each position of a block; ``t`` is ``(...)``, results ``(..., B)``."""

    def __init__(self, schedule: NoiseSchedule, block: int, strength: float):
        self.schedule = schedule
        steps_to_last = torch.arange(block - 1, -1, -1, dtype=torch.float64)
        # None: every position follows the schedule itself (exactly MDLM's numbers)
        self.exponents = torch.exp(2 * strength * steps_to_last / block) if strength else None

    def times(self, t: Tensor) -> Tensor:
        if self.exponents is None:
            return t[..., None]
        return t[..., None] ** self._exponents(t.device)

    def _exponents(self, device: torch.device) -> Tensor:
        if self.exponents.device != device:  # moved once, not copied at every call
            self.exponents = self.exponents.to(device)
        return self.exponents

    def mask_rates(self, t: Tensor) -> Tensor:
        return self.schedule.mask_rate(self.times(t))

    def weights(self, t: Tensor) -> Tensor:
        """The NELBO weight of a masked position at block time t."""
        if self.exponents is None:
            return self.schedule.loss_weight(t)[..., None]
        # t^k underflows to 0 for a large k at small t; that position is then never masked,
        # but its weight must stay finite (0 * inf is NaN in the loss's weighted sum)
        warped = self.times(t).clamp_min(1e-150)
        return self.schedule.loss_weight(warped) * warped * self._exponents(t.device) / t[..., None]

    def unmask_probability(self, t: Tensor, s: Tensor) -> Tensor:
        """The chance that a position masked at time t is unmasked at s < t, position by position."""
        return self.schedule.unmask_probability(self.times(t), self.times(s))


class Corruption:
    """``corruption(clean, u, keys, training) -> (noisy, weight)``, both ``(B, W)`` like ``clean``."""

    def __init__(self, config: BDLMConfig, mask_id: int):
        self.mask_id, self.block = mask_id, config.block_size
        self.estimator, self.eps = config.nelbo_estimator, config.eps
        self.clip = (config.clip_min, config.clip_max)
        self.schedule = BlockSchedule(
            make_schedule(config.schedule, config.eps), config.block_size, config.position_masking
        )

    def __call__(self, clean: Tensor, u: Tensor, keys: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        n, width = clean.shape
        keys = keys.view(n, width // self.block, self.block)
        if self.estimator == "count":
            low, high = self.count_range(training)
            counts = counts_in(u, low, high)
            masked = lowest_ranked(keys, counts)
            weight = (self.block / counts.double())[..., None].expand_as(keys)
        else:
            low, high = (max(self.eps, self.clip[0]), self.clip[1]) if training else (self.eps, 1.0)
            t = times_in(u, low, high)
            masked = keys < self.schedule.mask_rates(t)
            weight = self.schedule.weights(t).expand_as(keys)
        masked = masked.reshape(n, width)
        return clean.masked_fill(masked, self.mask_id), weight.reshape(n, width)

    def count_range(self, training: bool) -> tuple[int, int]:
        """The masks a block may draw: 1..B, or those whose share lies in the clipped range."""
        if not training:
            return 1, self.block
        low = max(1, math.ceil(self.clip[0] * self.block))
        return low, max(low, math.floor(self.clip[1] * self.block))
