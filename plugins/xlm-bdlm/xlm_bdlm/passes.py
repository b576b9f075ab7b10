"""The forward passes of block decoding, with a KV cache of the finished blocks or without one.

Both give the decoder the same three calls and count the passes each row takes part in:

- ``start()``: before the first block. Cached: the prefix goes into the cache in one
  pass (its shifted prediction for the first position kept); uncached: nothing.
- ``block(rows, b, window)``: the prediction for every position of block b of ``rows``.
  Cached: the block reads the cache without joining it (the rows a pass covers are a
  view of the cache); uncached: the whole stream ``[prefix; blocks <= b]`` again.
- ``finish(rows, b, window)``: block b of ``rows`` is final. Cached: finished rows
  leave the cache and the block is appended, once (its shifted prediction for the next
  block's first position kept); uncached: nothing.

The cached passes that append (``start``, ``finish``) also run the next block, all MASK
then, behind the clean tokens (``BDLMModel.context_logits(read_next=True)``): the first
``block`` call of that block returns those predictions without a pass of its own, so a
block costs as many passes as it has denoising steps, the appending included, as the
uncached decoder's does.

Each returns the passes it ran per row (``block`` returns them with the predictions),
so ``nfe`` counts every forward pass a row takes part in, the appending ones included.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xlm_bdlm.model import BDLMModel


class CachedPasses:
    def __init__(self, model: BDLMModel, prefix: Tensor, prefix_real: Tensor, window_width: int):
        self.model, self.block_size = model, model.block
        self.prefix, self.prefix_real = prefix, prefix_real  # on the CPU: padding facts cost nothing
        device = next(model.parameters()).device
        n, width = prefix.shape
        self.cache = model.new_cache(n, width + window_width, device)
        self.slot = torch.arange(n, device=device)  # each row's row in the cache
        self.before: Tensor | None = None  # with shift: each cached row's prediction for the next position
        self.ready: Tensor | None = None  # each cached row's predictions for its next, all-MASK block

    def start(self) -> Tensor:
        n, width = self.prefix.shape
        if width == 0:  # no BOS and no prompt budget: nothing to cache
            return torch.zeros(n, dtype=torch.long)
        device = self.slot.device
        mask = None if bool(self.prefix_real.all()) else self.prefix_real.to(device)
        self.before, self.ready = self.model.context_logits(
            self.prefix.to(device), mask, self.cache, read_next=True
        )
        if self.ready is not None:  # every row took part: its first block was read
            return torch.ones(n, dtype=torch.long)
        return self.prefix_real.any(dim=1).long()  # a row with nothing to cache took no part

    def block(self, rows: Tensor, b: int, window: Tensor) -> tuple[Tensor, int]:
        rows = rows.to(self.slot.device)
        idx = self.slot[rows]
        if self.ready is not None:  # the block's first step, read by the pass that appended
            ready, self.ready = self.ready[idx], None
            return ready, 0
        before = None if self.before is None else self.before[idx]
        if not self.model.reads_noisy_block:
            return before[:, None], 0
        # every cached row in the pass: the cache itself, no copy of its rows
        view = self.cache if len(idx) == self.cache.key_mask.shape[0] else self.cache.subset(idx)
        tokens = window[rows, b * self.block_size : (b + 1) * self.block_size]
        return self.model.block_logits(tokens, view, before), 1

    def finish(self, rows: Tensor, b: int, window: Tensor) -> int:
        rows = rows.to(self.slot.device)
        idx = self.slot[rows]
        if len(idx) < self.cache.key_mask.shape[0]:  # rows that are done leave the cache first
            self.cache.select(idx)
            self.before = None if self.before is None else self.before[idx]
            self.slot[rows] = torch.arange(len(rows), device=self.slot.device)
        tokens = window[rows, b * self.block_size : (b + 1) * self.block_size]
        self.before, self.ready = self.model.context_logits(tokens, None, self.cache, read_next=True)
        return 1


class StreamPasses:
    def __init__(self, model: BDLMModel, prefix: Tensor, prefix_real: Tensor, window_width: int):
        self.model, self.block_size = model, model.block
        device = next(model.parameters()).device
        self.prefix, self.prefix_real = prefix.to(device), prefix_real.to(device)
        self.padded_rows = ~prefix_real.all(dim=1)  # on the CPU: padding facts cost nothing

    def start(self) -> Tensor:
        return torch.zeros(len(self.prefix), dtype=torch.long)

    def block(self, rows: Tensor, b: int, window: Tensor) -> tuple[Tensor, int]:
        idx = rows.to(self.prefix.device)
        blocks = window[idx, : (b + 1) * self.block_size]
        stream = torch.cat([self.prefix[idx], blocks], dim=1)
        mask = None
        if bool(self.padded_rows[rows].any()):
            mask = torch.cat([self.prefix_real[idx], torch.ones_like(blocks, dtype=torch.bool)], dim=1)
        return self.model.stream_logits(stream, mask), 1

    def finish(self, rows: Tensor, b: int, window: Tensor) -> int:
        return 0
