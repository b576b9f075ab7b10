"""What a training example of a masked-diffusion family draws: its noise level, by either of two estimators.

Shared by MDLM (one draw per example) and BDLM (one draw per block). A *unit* is
what one draw corrupts: a target window of W positions, or a block of B. Two
unbiased estimators of the same continuous-time NELBO (docs/families/mdlm.md):

- ``time`` (Sahoo et al. 2024): the unit draws a time t, masks each of its positions
  independently with probability 1 - alpha_t, and weighs a masked position by
  -alpha'_t / (1 - alpha_t) (:meth:`~xlm_core.nn.schedule.NoiseSchedule.loss_weight`).
- ``count``: the unit draws the number of masks m in 1..W, masks m positions chosen
  uniformly, and weighs each by W / m. For a model that does not see t this is the
  time estimator with t integrated out: given m masks the time weight integrates to
  1 / (m * C(W, m)) for every schedule (eps -> 0), so the NELBO is
  W * E_m[(1/m) * the summed -log p of the m masked positions]. Its weights stay in
  [1, W], where 1/t reaches 1/eps: the same objective with far less gradient noise.

Both draw one uniform per unit, *stratified* over the units of a call (one uniform
offset shifted by i/n, antithetic sampling): the draws cover every stratum once while
each is still marginally uniform. :func:`times_in` and :func:`counts_in` map those
uniforms onto a range of times or counts, which is how a family restricts them (BDLM's
clipped schedule) without a second draw.
"""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_uniforms(n: int, generator: torch.Generator | None = None) -> Tensor:
    """``(n,)`` float64 in [0, 1): ``(u + i/n) mod 1`` for one uniform ``u`` (the only draw)."""
    u = torch.rand(1, generator=generator, dtype=torch.float64)
    return (u + torch.arange(n, dtype=torch.float64) / n) % 1.0


def times_in(u: Tensor, low: float, high: float) -> Tensor:
    """Uniforms ``u`` in [0, 1) mapped onto times in [low, high)."""
    return low + (high - low) * u


def counts_in(u: Tensor, low: int, high: int) -> Tensor:
    """Uniforms ``u`` in [0, 1) mapped onto int64 counts in low..high, each equally likely."""
    n = high - low + 1
    return (u * n).long().clamp(max=n - 1) + low


def stratified_times(
    batch_size: int, eps: float, generator: torch.Generator | None = None
) -> Tensor:
    """``(B,)`` float64 times in [eps, 1], stratified over the batch (the ``time`` estimator's draw)."""
    return times_in(stratified_uniforms(batch_size, generator), eps, 1.0)


def stratified_counts(
    batch_size: int, window: int, generator: torch.Generator | None = None
) -> Tensor:
    """``(B,)`` int64 mask counts in 1..window, stratified over the batch (the ``count`` estimator's draw)."""
    return counts_in(stratified_uniforms(batch_size, generator), 1, window)


def lowest_ranked(keys: Tensor, counts: Tensor) -> Tensor:
    """``keys.shape`` bool: the ``counts[i]`` positions of row i with the lowest keys.

    With i.i.d. uniform keys that is ``counts[i]`` positions chosen uniformly without
    replacement; the ``count`` estimator's masks.
    """
    ranks = keys.argsort(dim=-1).argsort(dim=-1)
    return ranks < counts.unsqueeze(-1)
