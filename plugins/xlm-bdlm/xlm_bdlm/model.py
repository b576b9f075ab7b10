"""The BDLM denoiser: the shared rotary transformer run under block-wise attention patterns.

The backbone is ARLM's (``Transformer.from_config(..., causal=True)``, the same tensor
names), so an ARLM or MDLM checkpoint loads into it unchanged (``--init-from``). What
makes it block diffusion is the attention pattern of each call (``attention.py``) and
where a position's prediction is read (``shift``):

- ``shift`` true (ARLM's reading): the prediction for position i comes from the hidden
  state at i - 1: in the noisy block when i - 1 is in it, else the last clean position
  before the block (the previous block, the prompt's last token or BOS), over the whole
  vocabulary. With B = 1 every prediction is read at a clean position that sees exactly
  what ARLM's does, so the model *is* the ARLM.
- ``shift`` false (MDLM's reading): the prediction for position i comes from position i
  itself, with MASK ruled out (SUBS's zero-masking). With one block it is MDLM's
  computation.

Inference state (the KV cache) belongs to the predictor, which calls
:meth:`context_logits`, :meth:`block_logits` and :meth:`stream_logits`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm_bdlm.attention import stream_pattern, two_copy_pattern
from xlm_bdlm.config import BDLMConfig
from xlm_core.components import ModelOutput, Vocab
from xlm_core.nn.kv_cache import KVCache
from xlm_core.nn.transformer import Transformer


class BDLMModel(nn.Module):
    """``model(input_ids, attention_mask=None, *, noisy=None) -> ModelOutput``.

    ``input_ids`` is a stream ``[prefix; blocks]`` ending at a block boundary. Without
    ``noisy`` the stream is run block-causally and ``logits`` ``(B, L, V)`` are read at
    every column: with ``shift``, column j's are the prediction for column j + 1 (as
    ARLM's); without, for column j. With ``noisy`` ``(B, W)`` (the window, corrupted), the
    last W stream columns are the clean window and the two-copy pass returns ``logits``
    ``(B, W, V)``: the prediction for each noisy window position, each block conditioned
    on the clean blocks before it.
    """

    def __init__(self, config: BDLMConfig, vocab: Vocab):
        super().__init__()
        self.block, self.shift, self.mask_id = config.block_size, config.shift, vocab.mask_id
        self.backbone = Transformer.from_config(config, vocab.size, causal=True)
        # not persistent: derived from the vocabulary, so a checkpoint holds learned weights only
        never = torch.zeros(vocab.size, dtype=torch.bool)
        never[vocab.mask_id] = True
        self.register_buffer("never_predicted", never, persistent=False)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, *, noisy: Tensor | None = None
    ) -> ModelOutput:
        if noisy is None:
            attend = stream_pattern(input_ids.shape[1], self.block, input_ids.device)
            return ModelOutput(self._read(self.backbone(input_ids, attention_mask, attend=attend)))
        return ModelOutput(self._two_copy_logits(input_ids, attention_mask, noisy))

    def _two_copy_logits(self, stream: Tensor, attention_mask: Tensor | None, noisy: Tensor) -> Tensor:
        n, length = stream.shape
        width = noisy.shape[1]
        if attention_mask is None:
            positions = torch.arange(length, device=stream.device).expand(n, length)
            mask = None
        else:
            positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
            mask = torch.cat([attention_mask, attention_mask.new_ones(n, width)], dim=1)
        # the noisy copy sits at the clean window's positions
        positions = torch.cat([positions, positions[:, -width:]], dim=1)
        attend = two_copy_pattern(length, width, self.block, stream.device)
        hidden = self.backbone(torch.cat([stream, noisy], 1), mask, positions=positions, attend=attend)
        clean, noisy_hidden = hidden[:, :length], hidden[:, length:]
        if not self.shift:
            return self._read(noisy_hidden)
        # the prediction for window position w is read one position earlier: in the noisy copy inside
        # a block, at the clean stream's previous column for a block's first position
        before_block = clean[:, length - width - 1 : length - 1]
        inside = F.pad(noisy_hidden[:, :-1], (0, 0, 1, 0))
        first = (torch.arange(width, device=stream.device) % self.block == 0)[None, :, None]
        return self.backbone.logits(torch.where(first, before_block, inside))

    def _read(self, hidden: Tensor) -> Tensor:
        """Logits of ``hidden``; without ``shift``, MASK ruled out as in MDLM (a clean token never is MASK)."""
        logits = self.backbone.logits(hidden)
        return logits if self.shift else logits.masked_fill(self.never_predicted, float("-inf"))

    # -- decoding (the predictor owns the cache) ----------------------------------------------------

    def new_cache(self, batch_size: int, max_length: int, device: torch.device | str) -> KVCache:
        return self.backbone.new_cache(batch_size, max_length, device)

    @property
    def reads_noisy_block(self) -> bool:
        """False when a block's predictions need no pass over the noisy block: with ``shift`` and
        B = 1 the single position's prediction is read before the block."""
        return not (self.shift and self.block == 1)

    def context_logits(
        self, ids: Tensor, attention_mask: Tensor | None, cache: KVCache, *, read_next: bool = False
    ) -> tuple[Tensor | None, Tensor | None]:
        """Append clean tokens (the prefix, or a finished block; ending at a block boundary) to the cache.

        Returns ``(before, next_block)``. ``before``: with ``shift``, the prediction for the
        position after them ``(B, V)``, the next block's first position; None without.
        ``next_block``: with ``read_next``, the predictions ``(B, block, V)`` for the next
        block while it is still all MASK, from the same pass (its columns run after the clean
        ones and stay out of the cache, as :meth:`block_logits`' do), so a block's first
        denoising step costs no pass of its own; None without, or when the block needs no
        pass (:attr:`reads_noisy_block`).
        """
        n, length = ids.shape
        read_next = read_next and self.reads_noisy_block
        if read_next:
            ids = torch.cat([ids, ids.new_full((n, self.block), self.mask_id)], dim=1)
            if attention_mask is not None:
                attention_mask = F.pad(attention_mask, (0, self.block), value=True)
        width = ids.shape[1]
        attend = stream_pattern(width, self.block, ids.device) if width > self.block else None
        hidden = self.backbone(ids, attention_mask, cache=cache, attend=attend, causal=False, append=length)
        before = self.backbone.logits(hidden[:, length - 1]) if self.shift else None
        return before, self._noisy_block(hidden[:, length:], before) if read_next else None

    def block_logits(self, block: Tensor, cache: KVCache, before: Tensor | None) -> Tensor:
        """``(B, block, V)``: the prediction for each position of a noisy block that reads the cache
        without joining it. ``before`` is the prediction for its first position (``shift``)."""
        if not self.reads_noisy_block:
            return before[:, None]
        return self._noisy_block(self.backbone(block, cache=cache, causal=False, append=False), before)

    def _noisy_block(self, hidden: Tensor, before: Tensor | None) -> Tensor:
        """A noisy block's predictions from its hidden states (``before``: see :meth:`block_logits`)."""
        if not self.shift:
            return self._read(hidden)
        return torch.cat([before[:, None], self.backbone.logits(hidden[:, :-1])], dim=1)

    def stream_logits(self, stream: Tensor, attention_mask: Tensor | None) -> Tensor:
        """``(B, block, V)``: the same without a cache, for the last block of ``stream`` =
        ``[prefix; finished blocks; noisy block]``."""
        attend = stream_pattern(stream.shape[1], self.block, stream.device)
        hidden = self.backbone(stream, attention_mask, attend=attend)
        if self.shift:
            return self.backbone.logits(hidden[:, -self.block - 1 : -1])
        return self._read(hidden[:, -self.block :])
