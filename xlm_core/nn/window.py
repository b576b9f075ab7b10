"""The fixed-window layout that denoising families (MDLM, MLM, ...) share.

A row is a left-padded prompt followed by a target window of W = target_length + 1
positions (P = prompt width)::

    [PAD .. PAD prompt] [t_1 .. t_n EOS PAD .. PAD]
     <------ P ------>  <----------- W ----------->

The window always has W positions, EOS then PAD fill, so a model learns where a
sequence ends; PAD inside the window is a real target. Prompts are left-padded to
a fixed width (the task's prompt budget, wider only for a longer prompt) so every
window starts at column P and a row's computation, and therefore its sample, does
not depend on the batch it is in.

A decoder reads a window back the same way: the output is everything before the
first EOS or PAD, at most W - 1 tokens (the last position only ever holds EOS or
PAD). Choosing which masked positions to decide next is :mod:`xlm_core.nn.unmasking`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import DataShape, Example, Vocab
from xlm_core.nn.nelbo import lowest_ranked

# -- layout ---------------------------------------------------------------------------------------


def window_length(shape: DataShape, max_new_tokens: int | None = None) -> int:
    """W: the length budget (``max_new_tokens``, else the task's target length) plus the
    position of the EOS after a target that fills it."""
    return (max_new_tokens or shape.target_length) + 1


def prompt_width(prompts: Sequence[Sequence[int]], shape: DataShape) -> int:
    """The task's prompt budget, widened for a longer prompt."""
    return max([shape.prompt_length, *map(len, prompts)])


def left_pad(prompts: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """``(B, width)`` ids with each prompt right-aligned, and the bool mask of real tokens."""
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
            real[row, width - len(prompt) :] = True
    return ids, real


def target_window(targets: Sequence[Sequence[int]], vocab: Vocab, shape: DataShape) -> Tensor:
    """``(B, target_length + 1)``: each target, its EOS, then PAD fill."""
    width = window_length(shape)
    longest = max((len(t) for t in targets), default=0)
    if longest >= width:
        raise ValueError(
            f"a target has {longest} tokens but the task's target_length is {shape.target_length}"
        )
    window = torch.full((len(targets), width), vocab.pad_id, dtype=torch.long)
    for row, target in enumerate(targets):
        window[row, : len(target)] = torch.as_tensor(list(target), dtype=torch.long)
        window[row, len(target)] = vocab.eos_id
    return window


def training_rows(
    examples: Sequence[Example], vocab: Vocab, shape: DataShape
) -> tuple[Tensor, Tensor, Tensor]:
    """The layout of a training batch before corruption: left-padded prompt ids ``(B, P)``, their
    real-token mask, and the clean target windows ``(B, W)``."""
    prompts = [ex.prompt_ids for ex in examples]
    prompt_ids, prompt_real = left_pad(prompts, prompt_width(prompts, shape), vocab.pad_id)
    return prompt_ids, prompt_real, target_window([ex.target_ids for ex in examples], vocab, shape)


def append_window(prompt_ids: Tensor, prompt_real: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``[prompt][window]`` and their attention mask: every window position is real, MASK included."""
    ids = torch.cat([prompt_ids, window], dim=1)
    real = torch.cat([prompt_real, torch.ones_like(window, dtype=torch.bool)], dim=1)
    return ids, real


def masked_rows(
    prompts: Sequence[Sequence[int]], shape: DataShape, width: int, vocab: Vocab
) -> tuple[Tensor, Tensor]:
    """Where a decoder starts: each prompt left-padded to the prompt budget, then ``width`` MASK
    positions ``(B, P + width)``, and the attention mask."""
    prompt_ids, prompt_real = left_pad(prompts, prompt_width(prompts, shape), vocab.pad_id)
    masks = torch.full((len(prompts), width), vocab.mask_id, dtype=torch.long)
    return append_window(prompt_ids, prompt_real, masks)


# -- corruption -----------------------------------------------------------------------------------


def exactly_masked(
    counts: Tensor,
    width: int,
    generator: torch.Generator | None = None,
    key_dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``(B, width)`` bool: ``counts[i]`` positions of row i, chosen uniformly without replacement.

    The positions are the ``counts[i]`` lowest-ranked under one uniform key per position,
    drawn in ``key_dtype`` (which fixes what a seeded generator yields).
    """
    keys = torch.rand(len(counts), width, generator=generator, dtype=key_dtype)
    return lowest_ranked(keys, counts)


# -- decoding -------------------------------------------------------------------------------------


def window_logits(logits: Tensor, vocab: Vocab) -> Tensor:
    """``logits`` with MASK, BOS and CLS at -inf: a window holds content, EOS and PAD only."""
    return logits.index_fill(-1, _not_in_window(vocab, logits.device), float("-inf"))


@functools.lru_cache(maxsize=16)
def _not_in_window(vocab: Vocab, device: torch.device) -> Tensor:
    # made once per vocabulary and device (a host-to-device copy at every step would wait for the
    # GPU), and as an ordinary tensor, which autograd may save, even when made under inference mode
    with torch.inference_mode(False):
        return torch.tensor([vocab.mask_id, vocab.bos_id, vocab.cls_id], device=device)


def first_end(window: Tensor, vocab: Vocab) -> Tensor:
    """``(B,)``: the index of each row's first EOS or PAD, the window width when it has none."""
    end = (window == vocab.eos_id) | (window == vocab.pad_id)
    return torch.where(end.any(dim=1), end.int().argmax(dim=1), window.shape[1])


def output_lengths(window: Tensor, vocab: Vocab) -> Tensor:
    """``(B,)``: each row's output length, up to its first EOS or PAD (MASK counts as a token not
    decided yet) and at most W - 1, since the last position only ever holds EOS or PAD."""
    return first_end(window, vocab).clamp(max=window.shape[1] - 1)


def output_decided(window: Tensor, vocab: Vocab) -> Tensor:
    """``(B,)`` bool: rows with no MASK before their first EOS or PAD (anywhere, when there is none).

    A decoder that never revises a decided token is done with such a row: its output is fixed.
    Pass only the positions the decoder decides (MDLM leaves the window's last one masked).
    """
    masked = window == vocab.mask_id
    first_masked = torch.where(masked.any(dim=1), masked.int().argmax(dim=1), window.shape[1])
    return first_masked >= first_end(window, vocab)


def output_ids(window: Tensor, lengths: Tensor, vocab: Vocab) -> Tensor:
    """``(B, W - 1)``: each row's first ``lengths[b]`` window tokens, PAD after them."""
    ids = window[:, : window.shape[1] - 1]
    after = torch.arange(ids.shape[1], device=ids.device)[None, :] >= lengths[:, None]
    return ids.masked_fill(after, vocab.pad_id)


def history_up_to(history: list[list[list[int]]] | None, lengths: Tensor) -> list[list[list[int]]] | None:
    """Each row's recorded states cut to its output length (``Prediction.history``): positions after
    the output are never shown, whatever they held while decoding."""
    if history is None:
        return None
    return [[state[:n] for state in states] for states, n in zip(history, lengths.tolist(), strict=True)]
