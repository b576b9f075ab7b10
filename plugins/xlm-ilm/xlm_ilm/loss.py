"""The ILM objective: one softmax over every (gap, token) insertion, plus a stop classifier.

For a row with ``n = n_drops > 0`` deleted tokens and per-gap counts ``c[g, v]``
(see :mod:`xlm_ilm.collator`), the insertion loss is the cross-entropy between
the normalised counts and the model's joint distribution::

    log p(g, v) = logits[g, v] - logsumexp over all valid (g', v') of logits[g', v']
    insertion_ce = - sum_{g, v} (c[g, v] / n) * log p(g, v)

Only BOS and real target positions are valid gaps, and PAD, MASK, BOS and CLS
are never valid insertions; both are masked to -inf *before* the joint
log-softmax, so the model spends no probability on them. EOS stays valid here
because packed text holds it between documents (see :func:`banned_tokens`).
A row with ``n = 0`` has no insertion target and contributes only to the stop
loss, a binary cross-entropy on the CLS head against ``1[n = 0]`` with the
positive class weighted by ``stop_pos_weight``. The optimiser sees
``mean(insertion_ce) + stop_loss_weight * stop_bce``, reported as ``ilm_loss``:
a mean over examples, so ``loss_weight`` stays None (the batch size).

There is no per-token likelihood to report (``nll_kind = "none"``):
``n_tokens`` still counts every target token plus EOS, as in every family.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm_core.components import IGNORE_INDEX, Batch, LossOutput, NLLKind, Vocab
from xlm_ilm.config import ILMConfig


def gap_mask(input_ids: Tensor, attention_mask: Tensor, bos_id: int) -> Tensor:
    """``(B, L)`` bool: True at BOS and every real position after it (the valid insertion gaps)."""
    is_bos = input_ids == bos_id
    return attention_mask & (is_bos.long().cumsum(dim=1) > 0)


def banned_tokens(vocab: Vocab, device: torch.device | str, *, eos: bool) -> Tensor:
    """``(V,)`` bool: the tokens that are never inserted: PAD, MASK, BOS, CLS, and EOS when ``eos``.

    Packed text blocks hold EOS between documents, so the loss scores EOS like any
    target token (``eos=False``); a prediction holds content tokens only, so the
    predictor bans it (``eos=True``). Tasks without EOS in their targets teach the
    model to give it no mass anyway.
    """
    banned = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    banned[[vocab.pad_id, vocab.mask_id, vocab.bos_id, vocab.cls_id]] = True
    banned[vocab.eos_id] = eos
    return banned


def masked_logits(logits: Tensor, gaps: Tensor, banned: Tensor) -> Tensor:
    """``logits`` ``(B, L, V)`` in float32 with invalid gaps (``gaps`` False) and banned tokens at ``-inf``."""
    invalid = ~gaps[:, :, None] | banned[None, None, :]
    return logits.float().masked_fill(invalid, float("-inf"))


def joint_log_probs(logits: Tensor, gaps: Tensor, banned: Tensor) -> Tensor:
    """Log-probabilities ``(B, L, V)`` normalised jointly over gaps and vocabulary.

    Invalid gaps and banned tokens get exactly ``-inf`` (probability 0).
    """
    masked = masked_logits(logits, gaps, banned)
    return masked - masked.flatten(1).logsumexp(dim=1)[:, None, None]


def weighted_bce(logits: Tensor, target: Tensor, pos_weight: float) -> Tensor:
    """``F.binary_cross_entropy_with_logits(logits, target, pos_weight=...)`` with the weight a plain
    number: no tensor is made for it at every step (on a GPU, a copy from the host)."""
    return -(pos_weight * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()


class ILMLoss:
    nll_kind: ClassVar[NLLKind] = "none"

    def __init__(self, config: ILMConfig, vocab: Vocab):
        self.vocab = vocab
        self.stop_loss_weight = config.stop_loss_weight
        self.stop_pos_weight = config.stop_pos_weight
        self._banned_on: dict[torch.device, Tensor] = {}

    def _banned(self, device: torch.device) -> Tensor:
        """:func:`banned_tokens` for the loss, made once per device: made at every step, it would be
        a copy from the host on a GPU. An ordinary tensor even when first made under inference
        mode (validation), so that training may save it for the backward pass."""
        if device not in self._banned_on:
            with torch.inference_mode(False):
                self._banned_on[device] = banned_tokens(self.vocab, device, eos=False)
        return self._banned_on[device]

    def __call__(self, model: nn.Module, batch: Batch) -> LossOutput:
        out = model(batch.input_ids, batch.model_mask)
        gaps = gap_mask(batch.input_ids, batch.attention_mask, self.vocab.bos_id)
        # joint_log_probs at the deleted pairs only: the full (B, L, V) log-softmax is never stored
        masked = masked_logits(out.logits, gaps, self._banned(out.logits.device)).flatten(1)
        log_z = masked.logsumexp(dim=1, keepdim=True)

        gap_index, gap_token = batch.extras["gap_index"], batch.extras["gap_token"]
        n_drops = batch.extras["n_drops"]
        dropped = gap_index != IGNORE_INDEX
        flat = torch.where(dropped, gap_index * out.logits.shape[-1] + gap_token, 0)
        picked = masked.gather(1, flat) - log_z
        # -inf can only be picked at a dropped position if the data is corrupt, never masked away
        insertion_ce = -torch.where(dropped, picked, 0.0).sum(dim=1) / n_drops.clamp(min=1)
        insertion_loss = insertion_ce.mean()

        stop = batch.extras["stop"]
        stop_logits = out.extras["stop_logits"].float()
        stop_loss = weighted_bce(stop_logits, stop, self.stop_pos_weight)
        loss = insertion_loss + self.stop_loss_weight * stop_loss

        bos_position = (batch.input_ids == self.vocab.bos_id).long().argmax(dim=1)
        target_lengths = batch.attention_mask.sum(dim=1) - bos_position - 1 + n_drops
        stop_acc = ((stop_logits > 0).float() == stop).float().mean()
        return LossOutput(
            loss=loss,
            n_tokens=(target_lengths + 1).sum(),  # content + EOS, the count every family uses
            metrics={
                "ilm_loss": loss.detach(),
                "insertion_loss": insertion_loss.detach(),
                "stop_loss": stop_loss.detach(),
                "stop_acc": stop_acc,
            },
        )
