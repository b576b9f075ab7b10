"""The key/value cache of causal decoding, and the attention masks it implies.

A predictor creates the cache (``Transformer.new_cache``) and owns it; the
transformer's ``forward`` asks it for the new tokens' positions and attention
mask, stores each layer's keys and values in it, and advances it. All the
bookkeeping (which slots hold real tokens, whether any padding was written,
dropping finished rows) lives here.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Key/value buffers for causal decoding, one slot per position, shared write position.

    Prompts are left-padded so every row writes its next token at the same slot;
    ``key_mask`` marks which slots hold real tokens. ``select(rows)`` drops
    finished rows so that they stop costing compute; it copies the cache, so a
    decoder calls it when :func:`worth_compacting` says so, not each time a row finishes.
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_heads: int,
        head_dim: int,
        max_length: int,
        *,
        device: torch.device | str,
        dtype: torch.dtype,
    ):
        shape = (n_layers, batch_size, n_heads, max_length, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_mask = torch.zeros(batch_size, max_length, dtype=torch.bool, device=device)
        self.length = 0
        # While no padding has been written, single-token steps need no attention mask at all,
        # which keeps the per-token cost of batch-1 decoding down to the matrix work.
        self.dense = True

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def select(self, rows: Tensor) -> None:
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]
        self.key_mask = self.key_mask[rows]

    # -- what Transformer.forward calls, in this order ---------------------------------------

    def extend(self, attention_mask: Tensor | None, length: int) -> None:
        """Record which of the next ``length`` slots will hold real tokens."""
        new = slice(self.length, self.length + length)
        if attention_mask is None:
            self.key_mask[:, new] = True
        else:
            self.key_mask[:, new] = attention_mask
            self.dense = self.dense and bool(attention_mask.all())

    def positions(self, attention_mask: Tensor | None, length: int) -> Tensor:
        """Positions of the new tokens: the running count of real tokens, so padding shifts none."""
        if attention_mask is None:
            offset = self.length
            rows = self.key_mask.shape[0]
            return torch.arange(offset, offset + length, device=self.key_mask.device).expand(rows, length)
        base = self.key_mask[:, : self.length].sum(1, keepdim=True)
        return (base + attention_mask.long().cumsum(1) - 1).clamp(min=0)

    def attention_mask(self, length: int) -> tuple[Tensor | None, bool]:
        """``(attn_mask, is_causal)`` for ``scaled_dot_product_attention`` over the cached keys."""
        if self.dense:
            if length == 1:  # one new token may see every cached key
                return None, False
            if self.length == 0:  # a prefill without padding is plain causal attention
                return None, True
        keys = self.key_mask[:, : self.length + length]  # already includes the new tokens
        return key_query_mask(keys, length, self.length, causal=True, device=keys.device), False

    def store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write the new tokens' keys and values of ``layer``; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, length: int) -> None:
        self.length += length


#: Compact once this share of the cached rows has finished. Dropping rows copies the whole cache
#: (about what one step's attention reads), while a finished row left in costs its share of every
#: later step: compacting at a quarter keeps the waste under a quarter of a step and needs only
#: O(log B) copies for B rows, where compacting at every finished row needed up to B.
COMPACT_SHARE = 0.25


def worth_compacting(finished: int, rows: int) -> bool:
    """Whether a decoder with ``finished`` of its ``rows`` cached rows done should drop them now."""
    return finished > 0 and finished >= COMPACT_SHARE * rows


def key_query_mask(
    keys: Tensor, length: int, offset: int, *, causal: bool, device: torch.device
) -> Tensor:
    """Boolean ``(B, 1, length, n_keys)``: which keys each of ``length`` queries (at ``offset``) sees.

    ``keys`` ``(B, n_keys)`` marks real keys. Every query also sees itself: a
    padding query whose keys are all hidden would otherwise produce NaN, and what
    a padding position computes is never used.
    """
    n_keys = keys.shape[1]
    mask = keys[:, None, None, :].expand(-1, 1, length, n_keys)
    q_pos = torch.arange(length, device=device)[:, None] + offset
    k_pos = torch.arange(n_keys, device=device)[None, :]
    if causal:
        mask = mask & (k_pos <= q_pos)
    return mask | (k_pos == q_pos)
