"""Who sees whom: the block-causal pattern of one stream, and BD3-LM's two-copy training pattern.

Blocks are counted back from the end of the stream (the window is a whole number of
blocks and ends the row, so they are the window's blocks, and the prefix before it is
cut the same way): column j of a stream of L columns is in block ``floor((j - L) / B)``.
The pattern therefore needs no layout facts beyond B, and a block's computation does not
depend on how far the prompt is padded.

- **one stream** ``[prefix; blocks]``: a block sees itself (bidirectionally) and every
  block before it. With B = 1 that is causal attention. It is what decoding computes
  (the blocks before the current one are clean) and what a model call without a noisy
  copy computes.
- **two copies** ``[prefix; clean window; noisy window]`` (Arriola et al. 2025, their
  ``block_diff_mask``): the clean stream as above, and noisy block b sees noisy block b
  and the clean blocks before b, so one forward pass gives every block's denoising
  prediction, each conditioned on clean context, as decoding will see it.

Patterns are boolean (queries x keys), True = may attend; the backbone adds padding
(``Transformer.forward(attend=...)``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def block_of(length: int, block: int, device: torch.device | str) -> Tensor:
    """``(length,)`` int64: each column's block, counted back from the end (the last block is -1)."""
    return torch.div(torch.arange(length, device=device) - length, block, rounding_mode="floor")


def stream_pattern(length: int, block: int, device: torch.device | str) -> Tensor:
    """``(length, length)``: each column sees its own block and the blocks before it."""
    b = block_of(length, block, device)
    return b[None, :] <= b[:, None]


def two_copy_pattern(stream: int, window: int, block: int, device: torch.device | str) -> Tensor:
    """``(stream + window)^2`` for ``[stream columns; noisy window]``: the clean stream block-causal,
    noisy block b seeing noisy block b and the stream's blocks before b, and no clean column
    seeing a noisy one."""
    b = torch.cat([block_of(stream, block, device), block_of(window, block, device)])
    noisy = torch.arange(stream + window, device=device) >= stream
    q, k = b[:, None], b[None, :]
    noisy_q, noisy_k = noisy[:, None], noisy[None, :]
    clean_sees = ~noisy_q & ~noisy_k & (k <= q)
    noisy_sees_noisy = noisy_q & noisy_k & (k == q)
    noisy_sees_clean = noisy_q & ~noisy_k & (k < q)
    return clean_sees | noisy_sees_noisy | noisy_sees_clean
