"""The ARLM model: the shared causal rotary transformer with its vocabulary head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xlm_arlm.config import ARLMConfig
from xlm_core.components import ModelOutput, Vocab
from xlm_core.nn.transformer import KVCache, Transformer


class ARLMModel(nn.Module):
    """``forward(input_ids, attention_mask) -> ModelOutput``; position ``i`` predicts token ``i + 1``.

    Decoding state is not kept here: the predictor creates a cache with
    :meth:`new_cache` and passes it to :meth:`next_token_logits`.
    """

    def __init__(self, config: ARLMConfig, vocab: Vocab):
        super().__init__()
        self.config = config
        self.backbone = Transformer.from_config(config, vocab.size, causal=True)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        positions: Tensor | None = None,
    ) -> ModelOutput:
        """Logits ``(B, L, V)``. Left padding is hidden and does not shift positions."""
        if attention_mask is not None and _only_right_padding(attention_mask):
            # Causal attention already keeps real tokens from seeing padding that follows
            # them, so the mask changes nothing real; dropping it lets attention use its
            # fused causal kernel (training batches are right-padded).
            attention_mask = None
        hidden = self.backbone(input_ids, attention_mask, positions=positions)
        return ModelOutput(self.backbone.logits(hidden))

    def new_cache(self, batch_size: int, max_length: int, device: torch.device | str) -> KVCache:
        return self.backbone.new_cache(batch_size, max_length, device)

    def next_token_logits(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Logits ``(B, V)`` for the token after the last position; the head runs on that position only."""
        hidden = self.backbone(input_ids, attention_mask, positions=positions, cache=cache)
        return self.backbone.logits(hidden[:, -1])


def _only_right_padding(mask: Tensor) -> bool:
    """True when no real token follows a padding position in any row."""
    return not bool((mask[:, 1:] & ~mask[:, :-1]).any())
