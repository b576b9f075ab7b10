"""Training batches for CALM: the prefix and the target window, cut into chunks of K tokens.

``input_ids`` is ``[prefix; window]`` (``layout.py``), a whole number of chunks;
``targets`` holds the clean window on the chunks up to the one with the final EOS (the
chunks a decoder generates) and ``IGNORE_INDEX`` elsewhere. Both stages read the same
batch: stage 1 reconstructs the target chunks, stage 2 predicts each of them from the
chunks before it. The stochastic parts of both losses (token masking, posterior
samples, the energy head's noise) are drawn by the loss, on the model's device.

With ``random_phase``, an example without a prompt (text) has its first r tokens moved
into its prompt, r ~ U{0..K-1} drawn from the ``generator``: its chunks then start r
tokens later, as they do when a prefix of any length is continued.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xlm_calm import layout
from xlm_calm.config import CALMConfig
from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_core.nn.window import append_window, target_window


class CALMCollator:
    def __init__(self, config: CALMConfig, vocab: Vocab, shape: DataShape):
        self.vocab, self.shape = vocab, shape
        self.k, self.random_phase = config.chunk_size, config.random_phase

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v, k = self.vocab, self.k
        prompts, targets = self._phased(examples, generator)
        prefix, prefix_real = layout.prefix_rows(prompts, v, self.shape, k)
        window = layout.pad_window(target_window(targets, v, self.shape), k, v.pad_id)
        width = window.shape[1]
        input_ids, attention_mask = append_window(prefix, prefix_real, window)
        ends = torch.tensor([len(t) for t in targets])  # where each final EOS is
        scored = window.masked_fill(~layout.through_end_chunk(ends, width, k), IGNORE_INDEX)
        target_ids = torch.cat([torch.full_like(prefix, IGNORE_INDEX), scored], dim=1)
        # the generator attends over chunks: the mask matters only where a chunk is all padding
        needs_mask = not bool(layout.real_chunks(prefix_real, k).all())
        return Batch(input_ids, attention_mask, target_ids, needs_mask=needs_mask, window=width)

    def _phased(
        self, examples: Sequence[Example], generator: torch.Generator | None
    ) -> tuple[list[list[int]], list[list[int]]]:
        prompts = [list(ex.prompt_ids) for ex in examples]
        targets = [list(ex.target_ids) for ex in examples]
        if not self.random_phase or self.k == 1:
            return prompts, targets
        # one draw per example whatever it holds, so an example's draw does not depend on the others
        shifts = torch.randint(self.k, (len(examples),), generator=generator).tolist()
        for i, r in enumerate(shifts):
            if not prompts[i]:
                r = min(r, max(0, len(targets[i]) - 1))  # a target keeps at least one token
                prompts[i], targets[i] = targets[i][:r], targets[i][r:]
        return prompts, targets
