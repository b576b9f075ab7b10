"""Per-row random streams that a whole batch draws from in one call: counter-based, so batch-invariant.

A sample must not depend on the batch it is decoded in, so every row draws its noise
from a stream of its own, seeded with the row's seed. One ``torch.Generator`` per row
does that, at the price of one call per row and step (and on a GPU one kernel launch
per row, then a stack). Here a row's stream is a function instead of a state:

    element i of the row's d-th draw = H(H(key + (d + 1) * GAMMA) + (i + 1) * GAMMA)
    key = H(seed)

with ``H`` the SplitMix64 finaliser (Steele, Lea and Flood 2014; Java's
``SplittableRandom``): a bijection of 64-bit integers, and a counter stepped by GAMMA
through it is the SplitMix64 generator, which passes BigCrush. Everything is integer
arithmetic on int64 tensors (multiplication wraps modulo 2^64, and shifts are made
logical by masking; tests/test_noise.py checks the bits against a pure-Python
SplitMix64), so a whole batch of draws is a handful of vectorised operations, and
the bits are the same on every device. The top 53 bits become a float64 uniform in
[0, 1).

The only state is a count of draws per row (``RowNoise.draws``), kept on the device:
drawing never waits for the host. A row that appears k times in one draw (one entry
per position it decides) takes k successive draws, in order, as k calls of its own
generator would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _int64(value: int) -> int:
    """``value`` modulo 2^64 as a signed 64-bit integer (the form int64 tensors hold)."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


GAMMA = _int64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: consecutive counters spread apart
_M1 = _int64(0xBF58476D1CE4E5B9)
_M2 = _int64(0x94D049BB133111EB)


def mix64(z: Tensor) -> Tensor:
    """The SplitMix64 finaliser, elementwise on an int64 tensor (a new tensor; ``z`` is kept)."""
    return mix64_(z.clone())[0]


def mix64_(z: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`mix64` in place; returns ``z`` and the scratch tensor it used (free to reuse).

    One scratch buffer for every shift: on a CPU a fresh tensor of this size is fresh pages
    from the system at every operation, which costs as much as the operation itself.
    """
    scratch = torch.empty_like(z)
    for shift, multiplier in ((30, _M1), (27, _M2), (31, None)):
        torch.bitwise_right_shift(z, shift, out=scratch)
        scratch &= (1 << (64 - shift)) - 1  # a logical shift: drop the copies of the sign bit
        z ^= scratch
        if multiplier is not None:
            z *= multiplier
    return z, scratch


class RowNoise:
    """One random stream per row (``seeds[i]`` seeds row ``i``), drawn for many rows at once.

    ``noise.select(rows)`` names the rows of a draw, in the order of the tensor the
    noise is for; :func:`xlm_core.nn.sampling.sample` and ``uniform`` take the
    selection where they take a list of generators.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        seeds_tensor = torch.tensor([_int64(int(s)) for s in seeds], dtype=torch.int64)
        self.keys = mix64(seeds_tensor).to(device)
        self.draws = torch.zeros(len(seeds), dtype=torch.int64, device=device)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def select(self, rows: Tensor | Sequence[int]) -> NoiseRows:
        rows = torch.as_tensor(rows, dtype=torch.int64)
        return NoiseRows(self, rows.to(self.device))

    def uniform(self, rows: Tensor, shape: Sequence[int]) -> Tensor:
        """``(len(rows), *shape)`` float64 uniforms in [0, 1): the next draw of each listed row."""
        n = math.prod(shape)
        draw = self.draws[rows] + _occurrence(rows)
        self.draws.index_add_(0, rows, torch.ones_like(rows))
        start = mix64(self.keys[rows] + (draw + 1) * GAMMA)
        offsets = torch.arange(1, n + 1, dtype=torch.int64, device=self.device) * GAMMA
        bits, scratch = mix64_(start[:, None] + offsets[None, :])
        top53 = torch.bitwise_right_shift(bits, 11, out=scratch) & ((1 << 53) - 1)
        return top53.double().mul_(2.0**-53).view(len(rows), *shape)


class NoiseRows:
    """Rows of a :class:`RowNoise`, in the order of a batch: entry ``j`` draws from row ``rows[j]``."""

    def __init__(self, noise: RowNoise, rows: Tensor):
        self.noise, self.rows = noise, rows

    def __len__(self) -> int:
        return len(self.rows)

    def uniform(self, shape: Sequence[int], device: torch.device | str) -> Tensor:
        return self.noise.uniform(self.rows, shape).to(device)


def _occurrence(rows: Tensor) -> Tensor:
    """For each entry, how many earlier entries name the same row (0 for a row's first entry)."""
    if rows.numel() <= 1:
        return torch.zeros_like(rows)
    order = torch.argsort(rows, stable=True)
    ordered = rows[order]
    first = torch.searchsorted(ordered, ordered, side="left")
    rank = torch.arange(len(rows), device=rows.device) - first
    return torch.empty_like(rows).scatter_(0, order, rank)
