"""The continuous-time NELBO of masked diffusion (Sahoo et al. 2024, eq. 10), per target token.

For one example with window x0, corrupted by the collator into z:

    NELBO estimate = sum over masked positions l of  -log p(x0_l | z) * weight

where ``weight`` (``batch.extras["weight"]``) comes from the collator's
estimator: -alpha'_t / (1 - alpha_t) for a drawn time t (1/t for the log-linear
schedule), or W / m for a drawn number of masks m (see collator.py). With SUBS
every unmasked position has log p = 0 on its token, so the sum may run over the
whole window and the unmasked terms are exactly zero. Either estimate is
unbiased for the NELBO up to O(eps) terms (docs/families/mdlm.md).

Normalisation: ``nll_sum`` covers every window position, PAD fill included
(the window is a one-to-one encoding of the sequence, so this is a bound on
-log p of the sequence), and ``n_tokens`` counts the target's content tokens
plus its EOS, the count ARLM divides by. ``nll_sum / n_tokens`` is therefore a
per-token bound directly comparable with ARLM's exact NLL. It is not a mean
over masked tokens, which would not be a bound; that mean is logged separately
as the diagnostic ``masked_ce``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_mdlm.config import MDLMConfig


def window_length(batch: Batch) -> int:
    """Every window position is a target and windows are right-aligned: the collator says how many
    columns that is (``batch.window``); a batch built without it has its target columns counted,
    which makes the host wait for the device."""
    if batch.window is not None:
        return batch.window
    return int((batch.targets != IGNORE_INDEX).any(dim=0).sum())


class MDLMLoss:
    nll_kind: ClassVar[NLLKind] = "bound"

    def __init__(self, config: MDLMConfig, vocab: Vocab):
        self.vocab = vocab

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput:
        w = window_length(batch)
        log_probs = model(batch.input_ids, batch.model_mask, batch.extras["t"], window=w).logits
        clean = batch.targets[:, -w:]
        # exactly 0 at unmasked positions: SUBS puts log-prob 0 on the token they carry
        token_nll = -log_probs.gather(-1, clean.unsqueeze(-1)).squeeze(-1)
        weight = batch.extras["weight"].to(token_nll.dtype)  # the collator's estimator decides it
        nll_sum = (token_nll * weight[:, None]).sum()
        n_tokens = (clean != self.vocab.pad_id).sum()

        masked = batch.input_ids[:, -w:] == self.vocab.mask_id
        masked_ce = token_nll.detach().sum() / masked.sum().clamp_min(1)
        return LossOutput.per_token(nll_sum, n_tokens, {"masked_ce": masked_ce})
