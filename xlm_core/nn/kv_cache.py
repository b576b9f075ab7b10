"""The key/value cache of causal and block-wise decoding, and the attention masks it implies.

A predictor creates the cache (``Transformer.new_cache``) and owns it; the
transformer's ``forward`` asks it for the new tokens' positions and attention
mask, stores each layer's keys and values in it, and advances it. All the
bookkeeping (which slots hold real tokens, whether any padding was written,
dropping finished rows) lives here.

Besides appending, a pass may only *read* the cache (``forward(..., append=False)``):
its tokens see every cached key, their keys and values go to the scratch slots after
the cached ones, and the write position stays, so the next pass overwrites them. A
block decoder runs its denoising steps that way and appends a block once it is
final. Such a pass may cover some of the rows only (:meth:`KVCache.subset`).
"""

from __future__ import annotations

import copy

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
        self.rows: Tensor | slice = slice(None)  # the rows a pass covers: all but in a subset view

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def select(self, rows: Tensor) -> None:
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]
        self.key_mask = self.key_mask[rows]

    def subset(self, rows: Tensor) -> KVCache:
        """A view of the cache for one pass over ``rows`` (indices of cached rows) that does not
        append: it shares the buffers, so the rows' scratch slots are written in place, and it
        cannot advance, since the write position is shared by every row."""
        view = copy.copy(self)
        view.rows = rows
        return view

    # -- what Transformer.forward calls, in this order ---------------------------------------

    def extend(self, attention_mask: Tensor | None, length: int) -> None:
        """Record which of the next ``length`` slots will hold real tokens."""
        new = slice(self.length, self.length + length)
        if attention_mask is None:
            self.key_mask[self.rows, new] = True
        else:
            self.key_mask[self.rows, new] = attention_mask
            self.dense = self.dense and bool(attention_mask.all())

    def positions(self, attention_mask: Tensor | None, length: int) -> Tensor:
        """Positions of the new tokens: the running count of real tokens, so padding shifts none."""
        cached = self.key_mask[self.rows, : self.length]
        new = torch.arange(length, device=cached.device)
        if attention_mask is None and self.dense:  # every cached slot holds a real token
            return (self.length + new).expand(len(cached), length)
        base = cached.sum(1, keepdim=True)
        if attention_mask is None:
            return base + new
        return (base + attention_mask.long().cumsum(1) - 1).clamp(min=0)

    def attention_mask(
        self, length: int, *, causal: bool = True, attend: Tensor | None = None
    ) -> tuple[Tensor | None, bool]:
        """``(attn_mask, is_causal)`` for ``scaled_dot_product_attention`` over the cached keys.

        The new tokens see every real cached key; among themselves they see each other
        causally, all of each other (``causal=False``), or as ``attend`` (``(length, length)``
        or ``(B, length, length)`` bool, True = may attend) says.
        """
        if self.dense and attend is None:
            if length == 1 or not causal:  # every key, cached or new, is visible
                return None, False
            if self.length == 0:  # a prefill without padding is plain causal attention
                return None, True
        keys = self.key_mask[self.rows, : self.length + length]  # already includes the new tokens
        if attend is None:
            return key_query_mask(
                keys, length, self.length, causal=causal, device=keys.device
            ), False
        cached = attend.new_ones((*attend.shape[:-1], self.length))
        return pattern_mask(keys, torch.cat([cached, attend], dim=-1), self.length), False

    def store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write the new tokens' keys and values of ``layer``; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, self.rows, :, start:end] = k
        self.v[layer, self.rows, :, start:end] = v
        return self.k[layer, self.rows, :, :end], self.v[layer, self.rows, :, :end]

    def advance(self, length: int) -> None:
        if not isinstance(self.rows, slice):
            raise RuntimeError(
                "a pass over a subset of the cached rows cannot append (append=False)"
            )
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


def pattern_mask(keys: Tensor | None, attend: Tensor, offset: int = 0) -> Tensor:
    """Boolean ``(B, 1, Lq, Lk)`` (``B`` = 1 without ``keys``): an explicit pattern ``attend``
    (``(Lq, Lk)`` or ``(B, Lq, Lk)``, True = the query may attend to the key) limited to real keys.

    ``keys`` ``(B, Lk)`` marks real keys (None: all are). Query i is key ``offset + i``
    and always sees itself, as in :func:`key_query_mask`.
    """
    length, n_keys = attend.shape[-2:]
    mask = attend if attend.dim() == 3 else attend[None]
    if keys is not None:
        mask = mask & keys[:, None, :]
    q_pos = torch.arange(length, device=attend.device)[:, None] + offset
    k_pos = torch.arange(n_keys, device=attend.device)[None, :]
    return (mask | (k_pos == q_pos))[:, None]
