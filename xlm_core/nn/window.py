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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import DataShape, Vocab


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
    width = shape.target_length + 1
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
