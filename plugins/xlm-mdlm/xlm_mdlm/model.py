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
from xlm_core.nn.schedule import make_schedule
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
    prompt. ``t`` ``(B,)`` is the noise level of a time-conditioned model
    (ignored otherwise); without it the model conditions on the share of MASK
    in its input (:meth:`observed_time`).
    """

    def __init__(self, config: MDLMConfig, vocab: Vocab):
        super().__init__()
        self.mask_id = vocab.mask_id
        self.time_conditioning = config.time_conditioning
        self.schedule = make_schedule(config.schedule, config.eps)
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
        # Callers pass None when nothing is padded (the collator's needs_mask, the predictor's own
        # check on the CPU), so attention takes its fused kernel without this pass asking the device.
        cond = None
        if self.time_conditioning:
            cond = t if t is not None else self.observed_time(input_ids, attention_mask)
        hidden = self.backbone(input_ids, attention_mask, cond=cond)
        if window is not None:
            hidden, input_ids = hidden[:, -window:], input_ids[:, -window:]
        return ModelOutput(subs_log_probs(self.backbone.logits(hidden), input_ids, self.mask_id))

    def observed_time(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """The time whose masking rate equals the share of MASK among the real positions: what a
        time-conditioned model conditions on when the caller gives no t."""
        masked = input_ids == self.mask_id
        if attention_mask is None:
            rate = masked.double().mean(dim=1)
        else:
            rate = (masked & attention_mask).sum(1).double() / attention_mask.sum(1).clamp_min(1)
        return self.schedule.time_at(rate)
