"""Noise schedules of the masking process: alpha_t, its derivative, and what training and sampling derive from them.

Shared by the masked-diffusion families (MDLM, BDLM); the estimators that draw a
training example's corruption from a schedule are in :mod:`xlm_core.nn.nelbo`.

``alpha_t`` is the probability that a token is still unmasked at time ``t`` in
[0, 1]: alpha_0 = 1 (clean), alpha_1 = eps (almost all masked). A token masked
at time t stays masked at every later time. Everything a family needs follows
from alpha and alpha':

- the NELBO weight of a masked position at time t: ``-alpha'_t / (1 - alpha_t)``;
- the ancestral step t -> s (s < t): a masked position unmasks with probability
  ``(alpha_s - alpha_t) / (1 - alpha_t)``.

Methods take tensors (any float dtype) and return the same dtype. ``mask_rate``
(1 - alpha) is the primitive so that each schedule can compute it without the
cancellation of ``1 - alpha`` near t = 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor


class NoiseSchedule(ABC):
    name: ClassVar[str]

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    @abstractmethod
    def mask_rate(self, t: Tensor) -> Tensor:
        """1 - alpha_t: the probability that a token is masked at time t."""

    @abstractmethod
    def alpha_prime(self, t: Tensor) -> Tensor:
        """d alpha_t / dt (negative: tokens only get masked as time runs forward)."""

    @abstractmethod
    def time_at(self, mask_rate: Tensor) -> Tensor:
        """The inverse of ``mask_rate``: the time at which a token is masked with this probability."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - self.mask_rate(t)

    def loss_weight(self, t: Tensor) -> Tensor:
        """-alpha'_t / (1 - alpha_t): the NELBO weight of a masked position's -log p(x0)."""
        return -self.alpha_prime(t) / self.mask_rate(t)

    def unmask_probability(self, t: Tensor, s: Tensor) -> Tensor:
        """(alpha_s - alpha_t) / (1 - alpha_t): chance that a position masked at t is unmasked at s < t."""
        return (self.mask_rate(t) - self.mask_rate(s)) / self.mask_rate(t)


class LogLinear(NoiseSchedule):
    """alpha_t = 1 - (1 - eps) t: masks accumulate linearly in time; the NELBO weight is exactly 1/t.

    Named after its total noise sigma_t = -log alpha_t = -log(1 - (1 - eps) t).
    """

    name = "log-linear"

    def mask_rate(self, t: Tensor) -> Tensor:
        return (1.0 - self.eps) * t

    def alpha_prime(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1.0 - self.eps))

    def loss_weight(self, t: Tensor) -> Tensor:
        return 1.0 / t  # (1 - eps) / ((1 - eps) t), without the rounding

    def time_at(self, mask_rate: Tensor) -> Tensor:
        return (mask_rate / (1.0 - self.eps)).clamp(0.0, 1.0)


class Cosine(NoiseSchedule):
    """alpha_t = eps + (1 - eps) cos(pi t / 2): few masks early, many late."""

    name = "cosine"

    def mask_rate(self, t: Tensor) -> Tensor:
        # 1 - cos(x) = 2 sin^2(x / 2) keeps precision at small t
        return (1.0 - self.eps) * 2.0 * torch.sin(t * (math.pi / 4)) ** 2

    def alpha_prime(self, t: Tensor) -> Tensor:
        return -(1.0 - self.eps) * (math.pi / 2) * torch.sin(t * (math.pi / 2))

    def time_at(self, mask_rate: Tensor) -> Tensor:
        half = (mask_rate / (2.0 * (1.0 - self.eps))).clamp(0.0, 0.5)
        return torch.asin(half.sqrt()) * (4 / math.pi)


SCHEDULES: dict[str, type[NoiseSchedule]] = {cls.name: cls for cls in (LogLinear, Cosine)}


def make_schedule(name: str, eps: float) -> NoiseSchedule:
    try:
        return SCHEDULES[name](eps)
    except KeyError:
        raise ValueError(
            f"unknown noise schedule {name!r} (known: {', '.join(SCHEDULES)})"
        ) from None
