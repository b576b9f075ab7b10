"""The energy score, CALM's likelihood-free training objective (Gneiting and Raftery 2007; Shao et al. 2025, eq. 9).

For a predictive distribution P and an outcome y,

    S(P, y) = E ||x - y||^beta - 1/2 E ||x - x'||^beta,     x, x' ~ P independent,

is strictly proper for 0 < beta < 2: its expectation over y ~ Q is smallest exactly
when P = Q. It needs samples of P only, never a density. The estimate here is
unbiased: N samples x_1..x_N of the model give the attraction term against every
target draw and the repulsion term over the N(N - 1) ordered pairs i != j. As the
authors do, the outcome is itself a set of M draws y_1..y_M of the autoencoder's
posterior of the true chunk, N(mean, std), which averages the score over the
posterior instead of fixing one point of it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def energy_score(samples: Tensor, targets: Tensor, beta: float = 1.0) -> Tensor:
    """``(...)``: the estimated score of each item, lower is better.

    ``samples`` ``(N, ..., D)`` are the model's draws (N >= 2), ``targets`` ``(M, ..., D)``
    draws of the outcome. Computed in float32 whatever the inputs' dtype: the two terms are
    close and their difference is the signal.
    """
    n, m = samples.shape[0], targets.shape[0]
    if n < 2:
        raise ValueError("the energy score's repulsion term needs at least two samples per item")
    batch = samples.shape[1:-1]
    x = samples.float().movedim(0, -2).reshape(-1, n, samples.shape[-1])  # (R, N, D)
    y = targets.float().movedim(0, -2).reshape(-1, m, targets.shape[-1])  # (R, M, D)
    attraction = _distance(x, y, beta).mean(dim=(1, 2))
    pairs = _distance(x, x, beta, skip_diagonal=True).sum(dim=(1, 2)) / (n * (n - 1))
    return (attraction - 0.5 * pairs).view(batch)


def _distance(a: Tensor, b: Tensor, beta: float, skip_diagonal: bool = False) -> Tensor:
    """``(R, Na, Nb)``: ``||a_i - b_j||^beta``, exactly 0 on the diagonal with ``skip_diagonal``.

    Differences, not the ``|a|^2 + |b|^2 - 2 a.b`` expansion: close samples are what the
    score is about, and the expansion loses their distance to cancellation.
    """
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    if skip_diagonal:
        # a zero distance has no gradient under ^beta (beta < 1: infinite): fill it, then drop it
        eye = torch.eye(d.shape[-1], dtype=torch.bool, device=d.device)
        d = d.masked_fill(eye, 1.0)
        return (d if beta == 1.0 else d.pow(beta)).masked_fill(eye, 0.0)
    return d if beta == 1.0 else d.clamp_min(1e-12).pow(beta)
