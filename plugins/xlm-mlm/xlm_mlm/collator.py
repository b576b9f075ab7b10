"""Training batches for the MLM: left-padded prompt, then a fixed-length target window, some of it masked.

Rows follow the core's fixed window layout (``xlm_core.nn.window``): the prompt
left-padded to P columns, then W = target_length + 1 positions of target, EOS and
PAD fill, so the model learns where a sequence ends. Each example draws a masking
ratio r ~ U(0, 1] and masks ceil(r * W) window positions chosen uniformly: at
least one, and any of them, PAD fill included. Prompt tokens are never masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_core.nn.window import append_window, exactly_masked, training_rows, window_length
from xlm_mlm.config import MLMConfig


class MLMCollator:
    def __init__(self, config: MLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape
        self.window = window_length(shape)

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v = self.vocab
        prompt_ids, prompt_real, window = training_rows(examples, v, self.shape)
        masked = self._mask(len(examples), generator)
        input_ids, attention_mask = append_window(
            prompt_ids, prompt_real, window.masked_fill(masked, v.mask_id)
        )
        targets = torch.cat(
            [torch.full_like(prompt_ids, IGNORE_INDEX), window.masked_fill(~masked, IGNORE_INDEX)],
            dim=1,
        )
        target_tokens = torch.tensor([len(ex.target_ids) + 1 for ex in examples])  # content + EOS
        # known here on the CPU: whether any prompt is padded, and that targets lie in the window
        return Batch(
            input_ids,
            attention_mask,
            targets,
            {"target_tokens": target_tokens},
            needs_mask=not bool(prompt_real.all()),
            window=self.window,
        )

    def _mask(self, batch_size: int, generator: torch.Generator | None) -> Tensor:
        """``(B, W)`` bool: ceil(r * W) positions per row, r ~ U(0, 1], positions uniform without replacement."""
        w = self.window
        r = 1.0 - torch.rand(batch_size, generator=generator, dtype=torch.float64)  # (0, 1]
        n_masked = torch.ceil(r * w).clamp(1, w).long()
        # float32 ranking keys: what this collator has always drawn from a seeded generator
        return exactly_masked(n_masked, w, generator, key_dtype=torch.float32)
