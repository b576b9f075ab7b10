"""Training batches for the MDLM: a left-padded prompt, then a fixed-length target window masked at time t.

Rows follow the core's fixed window layout (``xlm_core.nn.window``): the prompt
left-padded to P columns, then W = target_length + 1 positions of target, EOS and
PAD fill; PAD inside the window is a real target. Prompt tokens are never masked.
``targets`` holds the clean window at every window position: SUBS makes the
unmasked ones contribute exactly zero. ``extras["weight"]`` is each example's
NELBO weight per masked position.

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
from xlm_core.nn.window import append_window, exactly_masked, training_rows, window_length
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
