"""Which masked positions a decoder decides next: the most confident k, or all above a threshold.

Families that fill a masked window (MDLM, MLM, ...) score every position
(``xlm_core.nn.sampling.confidence``) and decide the positions these functions
choose. Ties go to the leftmost position: a stable sort and ``argmax`` (first
maximum) both order equal scores left to right, so a row's choice does not depend
on the batch it is in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def most_confident(score: Tensor, eligible: Tensor, k: int) -> Tensor:
    """``(B, W)`` bool: each row's ``k`` highest-scoring eligible positions (all of them when fewer)."""
    score = score.masked_fill(~eligible, float("-inf"))
    top = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros_like(eligible).scatter(1, top, True) & eligible


def above_threshold(score: Tensor, eligible: Tensor, threshold: float) -> Tensor:
    """``(B, W)`` bool: each row's eligible positions scoring above ``threshold``, and always its
    highest-scoring one, so every step decides something."""
    score = score.masked_fill(~eligible, float("-inf"))
    best = score.argmax(dim=1, keepdim=True)
    return (score > threshold).scatter(1, best, True) & eligible


def choose_to_unmask(score: Tensor, eligible: Tensor, settings: Any) -> Tensor:
    """The positions ``settings.sampler`` decides: ``confidence`` (``settings.k`` per row) or
    ``threshold`` (above ``settings.threshold``, at least one), as in ``ConfidenceSettings``."""
    if settings.sampler == "confidence":
        return most_confident(score, eligible, settings.k)
    if settings.sampler == "threshold":
        return above_threshold(score, eligible, settings.threshold)
    raise ValueError(f"sampler {settings.sampler!r} does not unmask by confidence")
