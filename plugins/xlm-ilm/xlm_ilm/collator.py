"""ILM corruption: delete a uniformly random number of target tokens and credit each to its gap.

For a target of ``L`` tokens, ``n_drops ~ U{0, ..., L}`` and a uniformly random
subset of that size is deleted (the prompt never is). The model sees::

    [CLS] prompt [BOS] kept target tokens [PAD ...]

A *gap* is named by the input position of the token after which an insertion
happens: BOS (insert at the front of the target) or a kept target token. Each
deleted token is credited to the gap after the last kept token before it, so a
leading run of deletions belongs to the BOS gap. With ``bos`` the input position
of BOS, that gap is ``bos + (number of kept tokens before the deleted one)``.

Targets are sparse index lists rather than a dense ``(B, L, V)`` count tensor
(which would be gigabytes for a text vocabulary):

``extras["gap_index"]`` ``(B, T)``
    input position of the gap each deleted token is credited to;
``extras["gap_token"]`` ``(B, T)``
    the deleted token's id;
``extras["n_drops"]`` ``(B,)``
    how many tokens were deleted (the number of valid entries per row);
``extras["stop"]`` ``(B,)``
    the stop target ``1[n_drops == 0]`` as a float.

``T`` is the longest target in the batch; unused entries hold ``IGNORE_INDEX``.
The count of token ``v`` in gap ``g`` is the number of pairs equal to ``(g, v)``
(:func:`gap_counts` builds the dense tensor for small vocabularies and tests).

``Batch.targets`` ``(B, L)`` holds, at every gap that receives at least one
token, the deleted token that directly follows the gap in the clean target
(what an in-order insertion would put there next); ``IGNORE_INDEX`` elsewhere.
The loss uses the full multiset from ``extras``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xlm_core.components import IGNORE_INDEX, Batch, DataShape, Example, Vocab
from xlm_ilm.config import ILMConfig


class ILMCollator:
    def __init__(self, config: ILMConfig, vocab: Vocab, shape: DataShape):
        self.vocab = vocab
        self.shape = shape

    def __call__(
        self, examples: Sequence[Example], generator: torch.Generator | None = None
    ) -> Batch:
        return self.collate(
            examples, [sample_deletions(len(ex.target_ids), generator) for ex in examples]
        )

    def collate(self, examples: Sequence[Example], deletions: Sequence[Tensor]) -> Batch:
        """The batch for given deletions: ``deletions[i]`` is a bool mask over ``examples[i].target_ids``.

        Computed for the whole batch at once (a few tensor operations, not a few per example):
        ILM's corruption used to be the slowest collation of the families by far.
        """
        v, b = self.vocab, len(examples)
        target_lengths = torch.tensor([len(ex.target_ids) for ex in examples], dtype=torch.long)
        longest_target = int(target_lengths.max()) if b else 0
        target = _right_padded([ex.target_ids for ex in examples], longest_target, v.pad_id)
        dropped = torch.zeros(b, longest_target, dtype=torch.bool)
        for i, d in enumerate(deletions):
            dropped[i, : len(d)] = d
        in_target = torch.arange(longest_target) < target_lengths[:, None]
        kept = in_target & ~dropped
        kept_before = kept.long().cumsum(1) - kept.long()
        dropped_before = dropped.long().cumsum(1) - dropped.long()
        n_drops = dropped.sum(1)

        # rows: [CLS] prompt [BOS] kept target tokens, then PAD
        prompt_lengths = torch.tensor([len(ex.prompt_ids) for ex in examples], dtype=torch.long)
        bos = 1 + prompt_lengths
        row_lengths = bos + 1 + kept.sum(1)
        width = int(row_lengths.max()) if b else 0
        input_ids = torch.full((b, width), v.pad_id, dtype=torch.long)
        input_ids[:, 0] = v.cls_id
        longest_prompt = int(prompt_lengths.max()) if b else 0
        prompt = _right_padded([ex.prompt_ids for ex in examples], longest_prompt, v.pad_id)
        r, c = (torch.arange(longest_prompt) < prompt_lengths[:, None]).nonzero(as_tuple=True)
        input_ids[r, 1 + c] = prompt[r, c]
        input_ids[torch.arange(b), bos] = v.bos_id
        r, c = kept.nonzero(as_tuple=True)
        input_ids[r, bos[r] + 1 + kept_before[r, c]] = target[r, c]
        attention_mask = torch.arange(width) < row_lengths[:, None]

        # the deleted tokens, in target order, each with its gap: bos + kept tokens before it
        gap_index = torch.full((b, longest_target), IGNORE_INDEX, dtype=torch.long)
        gap_token = torch.full((b, longest_target), IGNORE_INDEX, dtype=torch.long)
        r, c = dropped.nonzero(as_tuple=True)
        gap_index[r, dropped_before[r, c]] = bos[r] + kept_before[r, c]
        gap_token[r, dropped_before[r, c]] = target[r, c]
        # the first token of each run of deletions is the one directly after its gap
        kept_just_before = torch.cat([torch.ones(b, 1, dtype=torch.bool), kept[:, :-1]], dim=1)
        r, c = (dropped & kept_just_before).nonzero(as_tuple=True)
        targets = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
        targets[r, bos[r] + kept_before[r, c]] = target[r, c]

        extras = {
            "gap_index": gap_index,
            "gap_token": gap_token,
            "n_drops": n_drops,
            "stop": (n_drops == 0).float(),
        }
        # rows of one length have no padding: known here, on the CPU, so the loss need not look
        needs_mask = bool((row_lengths < width).any())
        return Batch(input_ids, attention_mask, targets, extras, needs_mask=needs_mask)


def _right_padded(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> Tensor:
    """``(len(rows), width)`` ids, each row followed by ``pad_id`` fill."""
    return torch.tensor(
        [[*row, *[pad_id] * (width - len(row))] for row in rows], dtype=torch.long
    ).view(len(rows), width)


def sample_deletions(length: int, generator: torch.Generator | None = None) -> Tensor:
    """A bool mask over ``length`` target tokens: ``n ~ U{0, ..., length}``, then a uniform subset of size n."""
    n = int(torch.randint(0, length + 1, (), generator=generator))
    dropped = torch.zeros(length, dtype=torch.bool)
    dropped[torch.randperm(length, generator=generator)[:n]] = True
    return dropped


def gap_counts(batch: Batch, vocab_size: int) -> Tensor:
    """The dense ``(B, L, V)`` per-gap token counts encoded by ``batch.extras`` (float)."""
    b, length = batch.input_ids.shape
    gap, tok = batch.extras["gap_index"], batch.extras["gap_token"]
    valid = gap != IGNORE_INDEX
    counts = torch.zeros(b, length * vocab_size, dtype=torch.float32, device=gap.device)
    flat = torch.where(valid, gap * vocab_size + tok, 0)
    counts.scatter_add_(1, flat, valid.float())
    return counts.view(b, length, vocab_size)
