"""The MLM loss: cross-entropy on the masked positions, averaged over them.

This is the Mask-Predict training objective, not a likelihood: a masking ratio
drawn per example weights every masked token equally, which does not add up to
log p(x) (MDLM's 1/t weighting does). So ``nll_kind`` is ``"none"``, the value is
reported as ``masked_ce`` and never turned into a perplexity.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import nn

from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_mlm.config import MLMConfig


class MLMLoss:
    nll_kind: ClassVar[NLLKind] = "none"

    def __init__(self, config: MLMConfig, vocab: Vocab):
        self.vocab = vocab

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(batch.input_ids, batch.attention_mask).logits
        masked = batch.targets != IGNORE_INDEX
        # only the masked positions are scored: select them before the float32 softmax
        masked_ce = F.cross_entropy(logits[masked].float(), batch.targets[masked])
        return LossOutput(
            loss=masked_ce,
            n_tokens=batch.extras["target_tokens"].sum(),
            nll_sum=None,
            metrics={"masked_ce": masked_ce.detach()},
            loss_weight=masked.sum(),
        )
