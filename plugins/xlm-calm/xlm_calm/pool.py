"""Likelihood-free temperature sampling: choose a chunk from a pool of decoded samples (Shao et al. 2025, section 5).

Sampling at temperature T means drawing x with probability proportional to p(x)^(1/T),
and CALM has no p(x), only a sampler. For 1/T = n an integer, n independent draws that
all agree are distributed as p(x)^n (normalised): the authors' exact algorithm repeats
until they agree. Their batch approximation, used here, draws a pool of N samples
once: a chunk x that occurs k_x times in the pool holds C(k_x, n) agreeing n-subsets, so
it is chosen with weight C(k_x, n), which tends to p(x)^n as N grows. When no chunk
occurs n times, n falls to the largest count in the pool (the authors step n down one
at a time, which lands on the same level: the most frequent chunks, equally weighted).

Extensions, both reducing to the above where it applies:

- 1/T not an integer: the weight is the generalised binomial coefficient
  C(k, a) = Gamma(k + 1) / (Gamma(a + 1) Gamma(k - a + 1)), a = 1/T, which grows like
  k^a / a!, so it tends to p(x)^a as the pool grows, the same argument;
- T = 0: a -> infinity, which leaves the most frequent chunks of the pool, equally weighted.

Chunks are compared as the text they make: tokens after a chunk's first EOS or PAD are
not part of it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def choose(pool: Tensor, temperature: float, u: Tensor) -> Tensor:
    """``(B,)`` the index in the pool of each row's chosen chunk.

    ``pool`` ``(B, N, K)`` token ids (already cut at their end), ``u`` ``(B,)`` uniforms in
    [0, 1) (float64), one per row: the row's own draw, so the choice is batch-invariant.
    """
    counts = (pool[:, :, None, :] == pool[:, None, :, :]).all(dim=-1).sum(dim=-1).to(torch.float64)
    top = counts.max(dim=-1, keepdim=True).values
    if temperature == 0:
        level = top
    else:
        a = torch.full_like(top, 1.0 / temperature)
        level = torch.where(top >= a, a, top)
    eligible = counts >= level
    # C(k, level) / k per entry: a chunk occurring k times is listed k times, C(k, level) in all
    log_weight = (
        torch.lgamma(counts + 1)
        - torch.lgamma((counts - level).clamp_min(0) + 1)
        - torch.log(counts)
    )
    log_weight = log_weight.masked_fill(~eligible, float("-inf"))
    weight = (log_weight - log_weight.max(dim=-1, keepdim=True).values).exp()
    cumulative = weight.cumsum(dim=-1)
    threshold = u[:, None] * cumulative[:, -1:]
    index = (cumulative <= threshold).sum(dim=-1)
    return index.clamp_max(pool.shape[1] - 1)
