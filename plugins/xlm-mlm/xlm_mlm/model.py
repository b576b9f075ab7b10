"""The MLM network: the shared bidirectional rotary transformer with a vocabulary head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xlm_core.components import ModelOutput, Vocab
from xlm_core.nn.transformer import Transformer
from xlm_mlm.config import MLMConfig


class MLMModel(nn.Module):
    """Predicts the token at every position from the whole sequence (no time input).

    MASK is an input symbol only: its logit is the lowest finite value, so its
    probability is exactly zero after a softmax (nothing can produce it) while the
    logits stay finite for whoever reads them.
    """

    def __init__(self, config: MLMConfig, vocab: Vocab):
        super().__init__()
        self.backbone = Transformer.from_config(config, vocab.size, causal=False)
        self.mask_id = vocab.mask_id

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> ModelOutput:
        logits = self.backbone.logits(self.backbone(input_ids, attention_mask))
        logits[..., self.mask_id] = torch.finfo(logits.dtype).min
        return ModelOutput(logits=logits)
