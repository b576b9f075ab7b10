"""ARLM loss: next-token cross-entropy on target tokens and EOS; an exact NLL."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from xlm_arlm.config import ARLMConfig
from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_core.nn.cross_entropy import token_nll


class ARLMLoss:
    """Mean cross-entropy over the positions whose target is not ``IGNORE_INDEX``.

    The chain rule makes the summed cross-entropy the exact negative log-likelihood
    of the target (and its EOS) given the prompt, so ``nll_kind`` is ``"exact"``.
    """

    nll_kind: ClassVar[NLLKind] = "exact"

    def __init__(self, config: ARLMConfig, vocab: Vocab):
        self.config, self.vocab = config, vocab

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(batch.input_ids, batch.model_mask).logits
        # float32 whatever the model's dtype (a summed NLL in bf16 loses its low digits), computed
        # a block of rows at a time so that no float32 copy of the whole logits is ever made
        nll_sum = token_nll(logits, batch.targets).sum()
        n_tokens = (batch.targets != IGNORE_INDEX).sum()
        return LossOutput.per_token(nll_sum, n_tokens)
