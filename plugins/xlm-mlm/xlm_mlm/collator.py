"""Training batches for the MLM: left-padded prompt, then a fixed-length target window, some of it masked.

Layout of a row (P = prompt width, W = target_length + 1)::

    [PAD .. PAD prompt] [t_1 .. t_n EOS PAD .. PAD]
     <------ P ------>  <----------- W ----------->

Prompts are left-padded so every window starts at column P, and the window
always has W positions, so the model learns where a sequence ends (EOS, then PAD
fill). Each example draws a masking ratio r ~ U(0, 1] and masks ceil(r * W)
window positions chosen uniformly: at least one, and any of them, PAD fill
included. Prompt tokens are never masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_core.nn.window import left_pad, prompt_width, target_window
from xlm_mlm.config import MLMConfig


class MLMCollator:
    def __init__(self, config: MLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape
        self.window = shape.target_length + 1

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v = self.vocab
        prompts = [ex.prompt_ids for ex in examples]
        prompt_ids, prompt_real = left_pad(prompts, prompt_width(prompts, self.shape), v.pad_id)
        window = target_window([ex.target_ids for ex in examples], v, self.shape)

        masked = self._mask(len(examples), generator)
        input_ids = torch.cat([prompt_ids, window.masked_fill(masked, v.mask_id)], dim=1)
        attention_mask = torch.cat([prompt_real, torch.ones_like(masked)], dim=1)
        targets = torch.cat(
            [torch.full_like(prompt_ids, IGNORE_INDEX), window.masked_fill(~masked, IGNORE_INDEX)],
            dim=1,
        )
        target_tokens = torch.tensor([len(ex.target_ids) + 1 for ex in examples])  # content + EOS
        return Batch(input_ids, attention_mask, targets, {"target_tokens": target_tokens})

    def _mask(self, batch_size: int, generator: torch.Generator | None) -> Tensor:
        """``(B, W)`` bool: ceil(r * W) positions per row, r ~ U(0, 1], positions uniform without replacement."""
        w = self.window
        r = 1.0 - torch.rand(batch_size, generator=generator, dtype=torch.float64)  # (0, 1]
        n_masked = torch.ceil(r * w).clamp(1, w).long()
        # a uniformly random ranking of the positions: the n lowest-ranked are masked
        rank = torch.rand(batch_size, w, generator=generator).argsort(dim=1).argsort(dim=1)
        return rank < n_masked[:, None]
