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
        """The batch for given deletions: ``deletions[i]`` is a bool mask over ``examples[i].target_ids``."""
        rows, gaps, tokens, firsts = [], [], [], []
        for ex, dropped in zip(examples, deletions, strict=True):
            target = torch.tensor(ex.target_ids, dtype=torch.long)
            kept = ~dropped
            bos = 1 + len(ex.prompt_ids)
            kept_before = kept.long().cumsum(0) - kept.long()
            rows.append(
                [self.vocab.cls_id, *ex.prompt_ids, self.vocab.bos_id, *target[kept].tolist()]
            )
            gaps.append(bos + kept_before[dropped])
            tokens.append(target[dropped])
            # the first token of each run of deletions is the one directly after its gap
            starts_run = dropped & torch.cat([torch.ones(1, dtype=torch.bool), kept[:-1]])
            firsts.append((bos + kept_before[starts_run], target[starts_run]))

        b = len(examples)
        width = max(len(r) for r in rows)
        longest_target = max((len(ex.target_ids) for ex in examples), default=0)
        input_ids = torch.full((b, width), self.vocab.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((b, width), dtype=torch.bool)
        gap_index = torch.full((b, longest_target), IGNORE_INDEX, dtype=torch.long)
        gap_token = torch.full((b, longest_target), IGNORE_INDEX, dtype=torch.long)
        targets = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
        for i, (row, gap, tok, (first_gap, first_tok)) in enumerate(
            zip(rows, gaps, tokens, firsts, strict=True)
        ):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = True
            gap_index[i, : len(gap)] = gap
            gap_token[i, : len(tok)] = tok
            targets[i, first_gap] = first_tok
        n_drops = torch.tensor([int(d.sum()) for d in deletions], dtype=torch.long)
        extras = {
            "gap_index": gap_index,
            "gap_token": gap_token,
            "n_drops": n_drops,
            "stop": (n_drops == 0).float(),
        }
        # rows of one length have no padding: known here, on the CPU, so the loss need not look
        needs_mask = any(len(row) < width for row in rows)
        return Batch(input_ids, attention_mask, targets, extras, needs_mask=needs_mask)


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
