"""Rotary position embedding (Su et al. 2021): queries and keys rotated by angles that grow with position,
so attention scores depend on relative offsets only."""

from __future__ import annotations

import torch
from torch import Tensor


def rotary_frequencies(head_dim: int, base: float = 10000.0) -> Tensor:
    half = head_dim // 2
    return base ** (-torch.arange(half, dtype=torch.float32) / half)


def rotary_tables(positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """cos and signed sin ``(B, 1, L, head_dim)`` for ``positions`` ``(B, L)``; computed once per forward.

    Each half of the head sees the same angles; the sine's first half is negated so that
    :func:`rotary` is two products and a sum over the whole head."""
    angles = positions.to(torch.float32)[:, None, :, None] * inv_freq.float()
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``(..., B, H, L, D)`` by the angles of :func:`rotary_tables` (half-split convention:
    ``(x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos)``); leading dimensions broadcast, so queries
    and keys turn in one call."""
    half = x.shape[-1] // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return x * cos.to(x.dtype) + swapped * sin.to(x.dtype)
