"""The block diffusion NELBO (Arriola et al. 2025, eq. 8), per target token.

For one example with clean window x, cut into blocks x^1 .. x^K, each block corrupted by
a draw of its own into z^b (``corruption.py``):

    NELBO estimate = sum over blocks b up to the EOS block, over masked positions l of b, of
                     weight_l * -log p(x^b_l | z^b, x^1 .. x^(b-1))

One two-copy forward pass gives every block's prediction at once (``model.py``). The
weight is MDLM's, per block: B / m for the count estimator, -alpha'/(1 - alpha) for the
time estimator. Blocks after the one that holds the EOS are never generated (the decoder
stops), so they are no part of the sequence's likelihood; the PAD positions inside the
EOS block are, as in MDLM's window.

Normalisation as every family's: ``nll_sum`` over the generated blocks, ``n_tokens``
the target's content tokens plus its EOS, the count ARLM divides by, so
``nll_sum / n_tokens`` is a per-token bound comparable with ARLM's exact NLL. With B = 1,
``shift`` and the count estimator every block is one masked token of weight 1 and the
bound is ARLM's NLL itself.

In training with a clipped schedule the loss is the clipped objective, not a bound; in
evaluation (the model in eval mode) the whole range is used and ``nll_sum`` is the bound.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from xlm_bdlm.config import BDLMConfig
from xlm_bdlm.corruption import Corruption
from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_core.nn.cross_entropy import token_nll


class BDLMLoss:
    nll_kind: ClassVar[NLLKind] = "bound"

    def __init__(self, config: BDLMConfig, vocab: Vocab):
        self.vocab = vocab
        self.corruption = Corruption(config, vocab.mask_id)

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput:
        w = _window_length(batch)
        clean, targets = batch.input_ids[:, -w:], batch.targets[:, -w:]
        noisy, weight = self.corruption(clean, batch.extras["u"], batch.extras["keys"], model.training)
        logits = model(batch.input_ids, batch.model_mask, noisy=noisy).logits
        # the masked positions of the generated blocks; every other position adds exactly 0
        scored = targets.masked_fill(noisy != self.vocab.mask_id, IGNORE_INDEX)
        token = token_nll(logits, scored)
        nll_sum = (token * weight.to(token.dtype)).sum()
        n_tokens = ((targets != IGNORE_INDEX) & (targets != self.vocab.pad_id)).sum()
        masked_ce = token.detach().sum() / (scored != IGNORE_INDEX).sum().clamp_min(1)
        return LossOutput.per_token(nll_sum, n_tokens, {"masked_ce": masked_ce})


def _window_length(batch: Batch) -> int:
    """The window's columns: the collator says (``batch.window``); a batch built without it has
    its window counted from the draws, one key per window position."""
    return batch.window if batch.window is not None else batch.extras["keys"].shape[1]
