"""The MDLM denoiser: a bidirectional rotary transformer with the SUBS parameterisation.

SUBS (Sahoo et al. 2024, section 3.2) builds two facts of the masking process
into the output, so the network never has to learn them:

- a clean token is never [MASK]: the MASK logit is -inf;
- an unmasked position is already decided: its distribution is a point mass on
  the token it carries (log-prob 0 there, -inf elsewhere), so it contributes
  exactly zero to the loss and is never resampled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm_core.components import ModelOutput, Vocab
from xlm_core.nn.transformer import Transformer
from xlm_mdlm.config import MDLMConfig


def subs_log_probs(logits: Tensor, tokens: Tensor, mask_id: int) -> Tensor:
    """SUBS log p(x0 | z) ``(B, W, V)`` float32 from raw ``logits`` and the input ``tokens`` ``(B, W)``."""
    logits = logits.float()
    logits[..., mask_id] = float("-inf")
    log_probs = F.log_softmax(logits, dim=-1)
    carry = torch.full_like(log_probs, float("-inf")).scatter_(-1, tokens.unsqueeze(-1), 0.0)
    return torch.where((tokens != mask_id).unsqueeze(-1), carry, log_probs)


class MDLMModel(nn.Module):
    """``model(input_ids, attention_mask, t=None, *, window=None) -> ModelOutput``.

    ``logits`` are SUBS log-probabilities (already normalised; filtering and
    sampling treat them as logits). ``window=W`` computes them for the last W
    positions only (the denoising window), sparing the vocabulary head the
    prompt. ``t`` ``(B,)`` is the noise level, required when the model is
    time-conditioned and ignored otherwise.
    """

    def __init__(self, config: MDLMConfig, vocab: Vocab):
        super().__init__()
        self.mask_id = vocab.mask_id
        self.time_conditioning = config.time_conditioning
        self.backbone = Transformer.from_config(
            config, vocab.size, causal=False, time_conditioning=config.time_conditioning
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        t: Tensor | None = None,
        *,
        window: int | None = None,
    ) -> ModelOutput:
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: let attention take its fastest path
        if self.time_conditioning and t is None:
            raise ValueError("this MDLM is time-conditioned: pass the noise level t=(B,)")
        hidden = self.backbone(
            input_ids, attention_mask, cond=t if self.time_conditioning else None
        )
        if window is not None:
            hidden, input_ids = hidden[:, -window:], input_ids[:, -window:]
        return ModelOutput(subs_log_probs(self.backbone.logits(hidden), input_ids, self.mask_id))
