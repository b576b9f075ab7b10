"""Rotary position embedding (Su et al. 2021): queries and keys rotated by angles that grow with position,
so attention scores depend on relative offsets only."""

from __future__ import annotations

import torch
from torch import Tensor


def rotary_frequencies(head_dim: int, base: float = 10000.0) -> Tensor:
    half = head_dim // 2
    return base ** (-torch.arange(half, dtype=torch.float32) / half)


def rotary_tables(positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """cos/sin ``(B, 1, L, head_dim // 2)`` for ``positions`` ``(B, L)``; computed once per forward."""
    angles = positions.to(torch.float32)[:, None, :, None] * inv_freq.float()
    return angles.cos(), angles.sin()


def rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``(B, H, L, D)`` by the angles in ``cos``/``sin`` (half-split convention)."""
    half = x.shape[-1] // 2
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
