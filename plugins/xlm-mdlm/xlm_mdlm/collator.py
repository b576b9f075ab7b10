"""Training batches for the MDLM: a left-padded prompt, then a fixed-length target window masked at time t.

Layout of a row (P = prompt width, W = target_length + 1)::

    [PAD .. PAD prompt] [t_1 .. t_n EOS PAD .. PAD]
     <------ P ------>  <----------- W ----------->

Prompts are left-padded to a fixed width (the task's prompt budget, wider only
for a longer prompt) so every window starts at column P and a row's computation
does not depend on the batch it is in. The window always has W positions, EOS
then PAD fill, so the model learns where a sequence ends; PAD inside the window
is a real target. Prompt tokens are never masked. ``targets`` holds the clean
window at every window position: SUBS makes the unmasked ones contribute exactly
zero. ``extras["weight"]`` is each example's NELBO weight per masked position.

Two unbiased estimators of the same NELBO (``nelbo_estimator``):

- ``time`` (Sahoo et al. 2024): each example draws one time t (stratified across
  the batch), masks every window position independently with probability
  1 - alpha_t, and weighs a masked position by -alpha'_t / (1 - alpha_t).
- ``count``: each example draws the number of masks m (stratified over 1..W),
  masks m positions chosen uniformly, and weighs each by W / m. For a model that
  does not see t this is the time estimator with t integrated out: given m masks,
  the weight integrates to  integral of -alpha'/(1 - alpha) (1 - alpha)^m alpha^(W-m) dt
  = 1 / (m * C(W, m))  for every schedule (eps -> 0), so the NELBO is
  sum over m of (1/m) E[sum of the m masked -log p] = W * E_m[(1/m) sum ...].
  Its weights stay in [1, W], where 1/t reaches 1/eps: the same objective with far
  less gradient noise (a draw of t near eps that masks one token weighs ~1/eps).
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


def stratified_counts(
    batch_size: int, window: int, generator: torch.Generator | None = None
) -> Tensor:
    """``(B,)`` int64 mask counts in 1..window, stratified like :func:`stratified_times`."""
    strata = stratified_times(batch_size, 0.0, generator)
    return (strata * window).long().clamp(max=window - 1) + 1


def exactly_masked(counts: Tensor, window: int, generator: torch.Generator | None = None) -> Tensor:
    """``(B, window)`` bool: ``counts[i]`` positions of row i, chosen uniformly without replacement."""
    keys = torch.rand(len(counts), window, generator=generator, dtype=torch.float64)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


class MDLMCollator:
    def __init__(self, config: MDLMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape
        self.window = shape.target_length + 1
        self.eps = config.eps
        self.estimator = config.nelbo_estimator
        self.schedule = make_schedule(config.schedule, config.eps)

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        v, w = self.vocab, self.window
        prompts = [ex.prompt_ids for ex in examples]
        prompt_ids, prompt_real = left_pad(prompts, prompt_width(prompts, self.shape), v.pad_id)
        clean = target_window([ex.target_ids for ex in examples], v, self.shape)

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
        input_ids = torch.cat([prompt_ids, clean.masked_fill(masked, v.mask_id)], dim=1)
        attention_mask = torch.cat([prompt_real, torch.ones_like(masked)], dim=1)
        targets = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), clean], dim=1)
        return Batch(input_ids, attention_mask, targets, {"t": t.float(), "weight": weight.float()})
