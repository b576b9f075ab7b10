"""Training batches for BDLM: the clean stream (prefix and window) and the draws that corrupt each block.

``input_ids`` is the clean stream ``[prefix; window]`` (``layout.py``), which the
model turns into the two-copy layout; ``targets`` holds the clean window on the
blocks up to the one with the final EOS (the blocks a decoder generates) and
``IGNORE_INDEX`` elsewhere. The corruption's randomness is drawn here, from the
``generator``: ``extras["u"]`` ``(B, n_blocks)`` one uniform per block, stratified over
the batch's blocks, and ``extras["keys"]`` ``(B, W_B)`` one uniform per position. The
loss turns them into masks (``corruption.py`` says why there). Both are float64, drawn in
the order MDLM draws its own, so one block over the whole window corrupts exactly as
MDLM does with the same generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xlm_bdlm import layout
from xlm_bdlm.config import BDLMConfig
from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_core.nn.nelbo import stratified_uniforms
from xlm_core.nn.window import append_window, target_window


class BDLMCollator:
    def __init__(self, config: BDLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab, self.shape = vocab, shape
        self.block, self.shift = config.block_size, config.shift

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v, b = self.vocab, self.block
        prompts = [ex.prompt_ids for ex in examples]
        prefix, prefix_real = layout.prefix_rows(prompts, v, self.shape, self.shift)
        window = layout.pad_window(target_window([ex.target_ids for ex in examples], v, self.shape), b, v.pad_id)
        n, width = window.shape
        u = stratified_uniforms(n * (width // b), generator).view(n, width // b)
        keys = torch.rand(n, width, generator=generator, dtype=torch.float64)

        input_ids, attention_mask = append_window(prefix, prefix_real, window)
        ends = torch.tensor([len(ex.target_ids) for ex in examples])  # where each final EOS is
        scored = window.masked_fill(~layout.through_end_block(ends, width, b), IGNORE_INDEX)
        targets = torch.cat([torch.full_like(prefix, IGNORE_INDEX), scored], dim=1)
        # facts the loss would otherwise read off the tensors on the device: whether any prefix is
        # padded (window positions are all real), and how wide the window is
        needs_mask = not bool(prefix_real.all())
        extras = {"u": u, "keys": keys}
        return Batch(input_ids, attention_mask, targets, extras, needs_mask=needs_mask, window=width)
