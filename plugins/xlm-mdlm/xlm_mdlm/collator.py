"""Training batches for the MDLM: a left-padded prompt, then a fixed-length target window masked at time t.

Rows follow the core's fixed window layout (``xlm_core.nn.window``): the prompt
left-padded to P columns, then W = target_length + 1 positions of target, EOS and
PAD fill; PAD inside the window is a real target. Prompt tokens are never masked.
``targets`` holds the clean window at every window position: SUBS makes the
unmasked ones contribute exactly zero. ``extras["weight"]`` is each example's
NELBO weight per masked position.

The two estimators of the NELBO (``nelbo_estimator``: ``time`` or ``count``) and their
stratified draws are the core kit's (``xlm_core.nn.nelbo``, shared with BDLM); here each
example is one unit of W window positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_core.nn.nelbo import stratified_counts, stratified_times
from xlm_core.nn.schedule import make_schedule
from xlm_core.nn.window import append_window, exactly_masked, training_rows, window_length
from xlm_mdlm.config import MDLMConfig

__all__ = ["MDLMCollator", "stratified_counts", "stratified_times"]


class MDLMCollator:
    def __init__(self, config: MDLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape
        self.window = window_length(shape)
        self.eps = config.eps
        self.estimator = config.nelbo_estimator
        self.schedule = make_schedule(config.schedule, config.eps)

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v, w = self.vocab, self.window
        prompt_ids, prompt_real, clean = training_rows(examples, v, self.shape)

        if self.estimator == "count":
            counts = stratified_counts(len(examples), w, generator)
            masked = exactly_masked(counts, w, generator)
            weight = w / counts.double()
            t = self.schedule.time_at(counts.double() / w)  # the time with this masking rate
        else:
            t = stratified_times(len(examples), self.eps, generator)
            u = torch.rand(len(examples), w, generator=generator, dtype=torch.float64)
            masked = u < self.schedule.mask_rate(t)[:, None]
            weight = self.schedule.loss_weight(t)
        input_ids, attention_mask = append_window(
            prompt_ids, prompt_real, clean.masked_fill(masked, v.mask_id)
        )
        targets = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), clean], dim=1)
        extras = {"t": t.float(), "weight": weight.float()}
        # facts the loss would otherwise read off the tensors on the device: whether any prompt is
        # padded (window positions are all real), and how wide the window is
        needs_mask = not bool(prompt_real.all())
        return Batch(input_ids, attention_mask, targets, extras, needs_mask=needs_mask, window=w)
