"""Training batches for the MDLM: a left-padded prompt, then a fixed-length target window masked at time t.

Layout of a row (P = prompt width, W = target_length + 1)::

    [PAD .. PAD prompt] [t_1 .. t_n EOS PAD .. PAD]
     <------ P ------>  <----------- W ----------->

Prompts are left-padded to a fixed width (the task's prompt budget, wider only
for a longer prompt) so every window starts at column P and a row's computation
does not depend on the batch it is in. The window always has W positions, EOS
then PAD fill, so the model learns where a sequence ends; PAD inside the window
is a real target. Each example draws one time t (stratified across the batch)
and masks every window position independently with probability 1 - alpha_t;
prompt tokens are never masked. ``targets`` holds the clean window at every
window position: SUBS makes the unmasked ones contribute exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_core.nn.window import left_pad, prompt_width, target_window
from xlm_mdlm.config import MDLMConfig
from xlm_mdlm.schedule import make_schedule


def stratified_times(
    batch_size: int, eps: float, generator: torch.Generator | None = None
) -> Tensor:
    """``(B,)`` float64 times in [eps, 1]: one uniform offset shifted by i/B, so the batch covers
    every stratum of [eps, 1] once while each t is still marginally uniform (antithetic sampling)."""
    u = torch.rand(1, generator=generator, dtype=torch.float64)
    strata = (u + torch.arange(batch_size, dtype=torch.float64) / batch_size) % 1.0
    return eps + (1.0 - eps) * strata


class MDLMCollator:
    def __init__(self, config: MDLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape
        self.window = shape.target_length + 1
        self.eps = config.eps
        self.schedule = make_schedule(config.schedule, config.eps)

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v, w = self.vocab, self.window
        prompts = [ex.prompt_ids for ex in examples]
        prompt_ids, prompt_real = left_pad(prompts, prompt_width(prompts, self.shape), v.pad_id)
        clean = target_window([ex.target_ids for ex in examples], v, self.shape)

        t = stratified_times(len(examples), self.eps, generator)
        u = torch.rand(len(examples), w, generator=generator, dtype=torch.float64)
        masked = u < self.schedule.mask_rate(t)[:, None]
        input_ids = torch.cat([prompt_ids, clean.masked_fill(masked, v.mask_id)], dim=1)
        attention_mask = torch.cat([prompt_real, torch.ones_like(masked)], dim=1)
        targets = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), clean], dim=1)
        return Batch(input_ids, attention_mask, targets, {"t": t.float()})
