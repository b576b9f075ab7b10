"""Where a CALM row's tokens go: whole chunks of K tokens, a prefix of them, then the target's.

::

    [PAD .. PAD BOS prompt] [t_1 .. t_K] [t_K+1 .. t_2K] ... [.. EOS PAD .. PAD]
     <- prefix: whole chunks -> <------- window: n_chunks * K tokens ---------->

The generator runs over chunks, one position per chunk, so everything is cut on the
chunk grid. The prefix is ``BOS + prompt`` right-aligned in a whole number of chunks:
the prompt ends on a chunk boundary, and the first generated chunk starts right after
it (BOS gives an empty prompt a chunk to start from). Its width comes from the task's
prompt budget (``xlm_core.nn.window.prompt_width``), so a row's layout does not depend
on the batch. A chunk made only of left padding is hidden from attention; the PAD in
front of BOS inside the first real chunk is part of that chunk's input.

The window is the core's (target, EOS, PAD fill: W = target_length + 1 positions),
padded with PAD to a multiple of K: a K that does not divide W costs a few PAD
positions and nothing else. A row is trained up to the chunk that holds its final EOS
(:func:`through_end_chunk`): the decoder stops after that chunk, so the chunks after it
are never generated, and the PAD inside it is generated like any token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import DataShape, Vocab
from xlm_core.nn.window import left_pad, prompt_width


def chunked_width(width: int, k: int) -> int:
    """``width`` rounded up to a multiple of ``k``."""
    return math.ceil(width / k) * k


def prefix_rows(
    prompts: Sequence[Sequence[int]], vocab: Vocab, shape: DataShape, k: int
) -> tuple[Tensor, Tensor]:
    """``(B, P)`` prefixes ``BOS + prompt`` right-aligned in whole chunks, and their real-token mask."""
    width = chunked_width(1 + prompt_width(prompts, shape), k)
    return left_pad([[vocab.bos_id, *p] for p in prompts], width, vocab.pad_id)


def pad_window(window: Tensor, k: int, pad_id: int) -> Tensor:
    """``window`` ``(B, W)`` with PAD columns appended up to a multiple of ``k``."""
    extra = chunked_width(window.shape[1], k) - window.shape[1]
    return torch.cat([window, window.new_full((len(window), extra), pad_id)], dim=1)


def through_end_chunk(ends: Tensor, width: int, k: int) -> Tensor:
    """``(B, width)`` bool: the positions of each row's chunks up to and including the chunk of its
    final EOS (at ``ends[i]``, right after the target), the chunks a decoder generates.

    Given by the target's length, not found as the first EOS: a packed text target holds EOS
    between its documents, and every one of its chunks is part of the example.
    """
    chunks = torch.arange(width, device=ends.device) // k
    return chunks[None, :] <= (ends // k)[:, None]


def chunks(ids: Tensor, k: int) -> Tensor:
    """``(B, L)`` -> ``(B, L / K, K)``; L must be a whole number of chunks."""
    if ids.shape[-1] % k:
        raise ValueError(
            f"a CALM row must be whole chunks of {k} tokens; got {ids.shape[-1]} columns"
        )
    return ids.view(*ids.shape[:-1], ids.shape[-1] // k, k)


def real_chunks(attention_mask: Tensor | None, k: int) -> Tensor | None:
    """``(B, L / K)`` bool: chunks holding at least one real token (None stays None: all are)."""
    return None if attention_mask is None else chunks(attention_mask, k).any(dim=-1)
