"""The MLM loss: cross-entropy on the masked positions, averaged over them.

This is the Mask-Predict training objective, not a likelihood: a masking ratio
drawn per example weights every masked token equally, which does not add up to
log p(x) (MDLM's 1/t weighting does). So ``nll_kind`` is ``"none"``, the value is
reported as ``masked_ce`` and never turned into a perplexity.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_core.nn.cross_entropy import token_nll
from xlm_mlm.config import MLMConfig


class MLMLoss:
    nll_kind: ClassVar[NLLKind] = "none"

    def __init__(self, config: MLMConfig, vocab: Vocab):
        self.vocab = vocab

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(batch.input_ids, batch.model_mask).logits
        targets = batch.targets
        if batch.window is not None:  # only the window holds targets: score its columns alone
            logits, targets = logits[:, -batch.window :], targets[:, -batch.window :]
        masked = targets != IGNORE_INDEX
        # every position is scored (0 where nothing is masked) rather than the masked ones picked
        # out, whose number the host would have to wait for; float32, a block of rows at a time
        n_masked = masked.sum()
        masked_ce = token_nll(logits, targets).sum() / n_masked.clamp_min(1)
        return LossOutput(
            loss=masked_ce,
            n_tokens=batch.extras["target_tokens"].sum(),
            nll_sum=None,
            metrics={"masked_ce": masked_ce.detach()},
            loss_weight=n_masked,
        )
