"""ARLM collator: ``[BOS] prompt target [EOS]`` shifted by one, loss on the target and EOS only."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xlm_arlm.config import ARLMConfig
from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab


class ARLMCollator:
    """Builds teacher-forcing batches, right-padded with PAD to the longest example.

    For ``seq = [BOS] + prompt + target + [EOS]``: ``input_ids = seq[:-1]`` and
    ``targets = seq[1:]`` with ``IGNORE_INDEX`` where the next token is still part
    of the prompt, and on padding. Nothing is random, so ``generator`` is unused.

    Padding is only ever on the right, where causal attention already keeps every
    real token from seeing it, and positions count from the left: the mask changes
    nothing the loss reads, so the batch says so (``needs_mask=False``) and the model
    runs without it, on attention's fused causal kernel.
    """

    def __init__(self, config: ARLMConfig, vocab: Vocab, shape: DataShape):
        self.config, self.vocab, self.shape = config, vocab, shape

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v = self.vocab
        length = max(1 + len(e.prompt_ids) + len(e.target_ids) for e in examples)
        input_ids = torch.full((len(examples), length), v.pad_id, dtype=torch.long)
        targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.bool)
        for row, e in enumerate(examples):
            seq = [v.bos_id, *e.prompt_ids, *e.target_ids, v.eos_id]
            n = len(seq) - 1
            input_ids[row, :n] = torch.tensor(seq[:-1])
            attention_mask[row, :n] = True
            first = len(e.prompt_ids)  # input position that predicts the first target token
            targets[row, first:n] = torch.tensor(seq[first + 1 :])
        return Batch(input_ids, attention_mask, targets, needs_mask=False)
