"""Which masked positions a decoder decides next: the most confident k, or all above a threshold;
in confidence order or in reading order.

Families that fill a masked window (MDLM, MLM, ...) score every position
(``xlm_core.nn.sampling.confidence``) and decide the positions these functions
choose. Ties go to the leftmost position: a stable sort and ``argmax`` (first
maximum) both order equal scores left to right, so a row's choice does not depend
on the batch it is in.

In reading order (``order: left_to_right``) a step decides the leftmost masked
positions instead: ``k`` of them, or the first and then each next one while it clears
the threshold. Every decided token then has all of its left context decided, which
is the order a model converted from an autoregressive one predicts best.
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


def leftmost(eligible: Tensor, k: int) -> Tensor:
    """``(B, W)`` bool: each row's ``k`` leftmost eligible positions (all of them when fewer)."""
    return eligible & (eligible.long().cumsum(dim=1) <= k)


def leading_above_threshold(score: Tensor, eligible: Tensor, threshold: float) -> Tensor:
    """``(B, W)`` bool: each row's leftmost eligible position, and the eligible positions after it
    up to (not including) the first that scores at or below ``threshold``. Decided positions in
    between neither count nor break the run."""
    first = leftmost(eligible, 1)
    later = eligible & ~first
    fails = later & ~(score > threshold)
    return first | (later & (fails.long().cumsum(dim=1) == 0))


def choose_to_unmask(score: Tensor, eligible: Tensor, settings: Any) -> Tensor:
    """The positions ``settings.sampler`` decides: ``confidence`` (``settings.k`` per row) or
    ``threshold`` (above ``settings.threshold``, at least one), in ``settings.order``, as in
    ``ConfidenceSettings``."""
    in_reading_order = getattr(settings, "order", "confidence") == "left_to_right"
    if settings.sampler == "confidence":
        return (
            leftmost(eligible, settings.k)
            if in_reading_order
            else most_confident(score, eligible, settings.k)
        )
    if settings.sampler == "threshold":
        if in_reading_order:
            return leading_above_threshold(score, eligible, settings.threshold)
        return above_threshold(score, eligible, settings.threshold)
    raise ValueError(f"sampler {settings.sampler!r} does not unmask by confidence")
