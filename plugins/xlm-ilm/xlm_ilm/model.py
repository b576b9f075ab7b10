"""The ILM network: a bidirectional rotary transformer with token logits at every position and a stop head."""

from __future__ import annotations

from torch import Tensor, nn

from xlm_core.components import ModelOutput, Vocab
from xlm_core.nn.transformer import Transformer
from xlm_ilm.config import ILMConfig


class ILMModel(nn.Module):
    """Reads ``[CLS] prompt [BOS] partial target``.

    ``logits[b, i]`` scores the tokens that could be inserted right after position
    ``i`` (only BOS and target positions are gaps; the loss and the predictor mask
    the rest). ``extras["stop_logits"]`` ``(B,)`` is the logit of "the target is
    complete", read from the CLS state at position 0.
    """

    def __init__(self, config: ILMConfig, vocab: Vocab):
        super().__init__()
        self.backbone = Transformer.from_config(config, vocab.size, causal=False)
        self.stop_head = nn.Linear(config.d_model, 1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> ModelOutput:
        hidden = self.backbone(input_ids, attention_mask)
        stop_logits = self.stop_head(hidden[:, 0]).squeeze(-1)
        return ModelOutput(self.backbone.logits(hidden), {"stop_logits": stop_logits})
