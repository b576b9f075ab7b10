"""Sampling utilities shared by every predictor: logit filtering, per-example randomness, confidence.

Per-example randomness makes samples batch-size invariant: row ``i`` draws its
noise from its own stream seeded with ``seeds[i]``, so it gets the same sample
alone or in any batch. Two kinds of stream are accepted wherever noise is drawn:

- a :class:`~xlm_core.nn.noise.RowNoise` selection (``RowNoise(seeds, device).select(rows)``):
  counter-based streams, every row's noise drawn in one vectorised call, on the
  device. What the in-repo predictors use.
- a list of ``torch.Generator`` (:func:`make_generators`), one call per row: the
  original form, kept for plugins written against it. The two give different
  (equally valid) samples for the same seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.errors import renamed_attributes
from xlm_core.nn.noise import NoiseRows
from xlm_core.nn.noise import RowNoise as RowNoise  # re-exported: sampling is where predictors look
from xlm_core.plugins.settings import ConfidenceKind

#: Per-row noise: a selection of :class:`RowNoise` rows, or one generator per row.
Streams = NoiseRows | Sequence[torch.Generator]

#: ``Confidence`` (the old name of :data:`xlm_core.plugins.ConfidenceKind`) still resolves,
#: with one warning, until xlm-core 0.3.0.
__getattr__ = renamed_attributes(__name__, {"Confidence": "xlm_core.plugins.settings.ConfidenceKind"})


def make_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per example; noise is drawn on CPU when the device has no per-row generator support."""
    gens = []
    for seed in seeds:
        g = torch.Generator(device=_generator_device(device))
        g.manual_seed(int(seed))
        gens.append(g)
    return gens


def _generator_device(device: torch.device | str) -> torch.device:
    # The index stays: a generator on plain "cuda" is the current device's, maybe not the model's.
    device = torch.device(device)
    return device if device.type == "cuda" else torch.device("cpu")


def uniform(generators: Streams, shape: Sequence[int], device: torch.device | str) -> Tensor:
    """``(len(generators), *shape)`` uniforms in [0, 1), float64, row ``i`` drawn from stream ``i``."""
    if not len(generators):
        return torch.empty((0, *shape), dtype=torch.float64, device=device)
    if isinstance(generators, NoiseRows):
        return generators.uniform(shape, device)
    rows = [torch.rand(tuple(shape), generator=g, dtype=torch.float64, device=g.device) for g in generators]
    return torch.stack(rows).to(device)


def filter_logits(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """Apply temperature, then top-k, then nucleus (top-p) filtering; filtered entries become -inf.

    Temperature 0 keeps only the arg-max (greedy), expressed as logits so callers
    need no special case.
    """
    logits = logits.float()
    if temperature == 0:
        keep = logits == logits.max(dim=-1, keepdim=True).values
        return logits.masked_fill(~keep, float("-inf"))
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the mass strictly before it already reaches top_p (the top token always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def gumbel_argmax(logits: Tensor, generators: Streams) -> Tensor:
    """Sample ``argmax(log p + Gumbel)`` per row: an exact categorical draw from ``softmax(logits)``.

    ``logits`` is ``(B, ..., V)``; row ``b`` uses stream ``b`` of ``generators``. The noise is added to
    log-probabilities (never to probabilities) in float64, so rare tokens keep their
    true probability instead of being rounded away.
    """
    logp = torch.log_softmax(logits.double(), dim=-1)
    u = uniform(generators, logits.shape[1:], logits.device).clamp_(1e-300, 1.0 - 1e-16)
    gumbel = -torch.log(-torch.log(u))
    return (logp + gumbel).argmax(dim=-1)


def sample(
    logits: Tensor,
    generators: Streams,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """Filter then draw one token per position; temperature 0 is greedy and uses no randomness."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    return gumbel_argmax(filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p), generators)


def confidence(probs: Tensor, kind: ConfidenceKind) -> Tensor:
    """A per-position score where higher means more certain: top probability, top-1 minus top-2, or -entropy."""
    if kind == "top_prob":
        return probs.max(dim=-1).values
    if kind == "margin":
        top2 = torch.topk(probs, 2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if kind == "neg_entropy":
        return (probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)
    raise ValueError(f"unknown confidence {kind!r}; expected top_prob, margin or neg_entropy")
