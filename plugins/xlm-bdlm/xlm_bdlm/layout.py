"""Where a BDLM row's tokens go: a clean prefix, then the target window cut into blocks of B.

::

    [PAD .. PAD (BOS) prompt] [t_1 .. t_B] [t_B+1 .. t_2B] ... [.. EOS PAD .. PAD]
     <------ prefix, P' ----> <-------------- window, W_B = n_blocks * B --------->

The window is the core's (``xlm_core.nn.window``: target, EOS, PAD fill, W =
target_length + 1 positions), padded with PAD to a multiple of B, so a block size that
does not divide W costs a few PAD positions and nothing else. The prefix is the prompt
left-padded to a width that does not depend on the batch (the task's prompt budget),
behind a BOS when the model reads its predictions shifted (``shift``): the first
target's prediction is read at the position before it, as ARLM reads it.

A row's likelihood covers the blocks up to the one that holds its final EOS
(:func:`through_end_block`): the decoder stops after that block, so the blocks after
it are never generated, and the PAD positions inside it are generated like any token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import DataShape, Vocab
from xlm_core.nn.window import left_pad, prompt_width


def padded_width(width: int, block: int) -> int:
    """``width`` rounded up to a multiple of ``block``."""
    return math.ceil(width / block) * block


def prefix_rows(
    prompts: Sequence[Sequence[int]], vocab: Vocab, shape: DataShape, shift: bool
) -> tuple[Tensor, Tensor]:
    """``(B, P')`` left-padded prefixes (``[BOS] + prompt`` with ``shift``) and their real-token mask."""
    bos = [vocab.bos_id] if shift else []
    width = prompt_width(prompts, shape) + len(bos)
    return left_pad([bos + list(p) for p in prompts], width, vocab.pad_id)


def pad_window(window: Tensor, block: int, pad_id: int) -> Tensor:
    """``window`` ``(B, W)`` with PAD columns appended up to a multiple of ``block``."""
    extra = padded_width(window.shape[1], block) - window.shape[1]
    return torch.cat([window, window.new_full((len(window), extra), pad_id)], dim=1)


def through_end_block(ends: Tensor, width: int, block: int) -> Tensor:
    """``(B, width)`` bool: the positions of each row's blocks up to and including the block of its
    final EOS (at ``ends[i]``, right after the target), the blocks a decoder generates.

    Given by the target's length, not found as the first EOS: a packed text target holds
    EOS between its documents, and every one of its blocks is part of the example.
    """
    blocks = torch.arange(width, device=ends.device) // block
    return blocks[None, :] <= (ends // block)[:, None]
