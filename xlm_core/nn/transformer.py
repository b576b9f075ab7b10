"""The rotary transformer every family builds on: causal (ARLM) or bidirectional (MDLM, MLM, ILM).

Inference state is not kept here: a :class:`~xlm_core.nn.kv_cache.KVCache` is
created and owned by a predictor and passed into ``forward``, which only asks it
for positions and masks, stores each layer's keys and values in it, and advances it
(or, with ``append=False``, only reads it).

A family whose attention is neither causal nor bidirectional (block diffusion: each
block sees itself and the blocks before it) passes the pattern per call: ``attend``,
a boolean queries x keys matrix. Without it nothing changes, and nothing costs more.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm_core.nn.block import Block, RMSNorm
from xlm_core.nn.kv_cache import KVCache, key_query_mask, pattern_mask
from xlm_core.nn.rotary import rotary_frequencies, rotary_tables
from xlm_core.plugins.settings import FamilyConfig

__all__ = ["KVCache", "RMSNorm", "Transformer"]


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of a scalar noise level per example, then an MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * 1000.0 * freqs
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class Transformer(nn.Module):
    """Token embedding, rotary pre-norm blocks, final norm and a vocabulary head.

    ``forward`` returns hidden states ``(B, L, d_model)``; ``logits(hidden)`` maps
    them to ``(B, L, vocab_size)``. Families add their own heads on the hidden
    states (e.g. ILM's stop head).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        d_model: int,
        n_layers: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        time_conditioning: bool = False,
        tie_embeddings: bool = True,
        learned_positions: int = 0,
        token_shift: bool = False,
    ):
        super().__init__()
        if token_shift and causal:
            raise ValueError("token_shift mixes in the next token: it needs a bidirectional transformer")
        self.causal = causal
        self.n_layers, self.n_heads, self.d_model = n_layers, n_heads, d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        # Rotary attention sees only relative offsets; an absolute embedding lets a token know,
        # e.g., whether it sits at an even or odd slot of a flat list of pairs.
        self.position_embed = nn.Embedding(learned_positions, d_model) if learned_positions else None
        # Token shift: each position also reads its left and right neighbours' embeddings through
        # a learned map, so a position knows its neighbours' tokens before any attention. A masked
        # slot can then look its neighbour up in one attention layer instead of first fetching it.
        self.shift = nn.Linear(2 * d_model, d_model, bias=False) if token_shift else None
        self.time_embed = TimestepEmbedding(d_model) if time_conditioning else None
        cond_dim = d_model if time_conditioning else None
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_ff or 4 * d_model, dropout, cond_dim) for _ in range(n_layers)
        )
        self.norm = RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        # Not persistent: derived from the shape, so checkpoints hold learned weights only.
        self.register_buffer("inv_freq", rotary_frequencies(d_model // n_heads), persistent=False)
        self.apply(_init_weights)
        if self.shift is not None:  # the neighbours' share of the input starts as large as the token's
            nn.init.normal_(self.shift.weight, std=(2 * d_model) ** -0.5)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    @classmethod
    def from_config(
        cls, config: FamilyConfig, vocab_size: int, *, causal: bool = False, time_conditioning: bool = False
    ) -> Transformer:
        return cls(
            vocab_size,
            d_model=config.d_model,
            n_layers=config.n_layers,
            n_heads=config.n_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            causal=causal,
            time_conditioning=time_conditioning,
            tie_embeddings=config.tie_embeddings,
            learned_positions=config.learned_positions,
            token_shift=config.token_shift,
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def new_cache(self, batch_size: int, max_length: int, device: torch.device | str) -> KVCache:
        dtype = self.embed.weight.dtype
        if torch.is_autocast_enabled(torch.device(device).type):
            dtype = torch.get_autocast_dtype(torch.device(device).type)
        return KVCache(
            self.n_layers, batch_size, self.n_heads, self.head_dim, max_length, device=device, dtype=dtype
        )

    def forward(
        self,
        input_ids: Tensor | None,
        attention_mask: Tensor | None = None,
        *,
        positions: Tensor | None = None,
        cond: Tensor | None = None,
        cache: KVCache | None = None,
        attend: Tensor | None = None,
        causal: bool | None = None,
        append: bool | int = True,
        embeds: Tensor | None = None,
    ) -> Tensor:
        """Hidden states for ``input_ids`` ``(B, L)``.

        ``attention_mask`` (bool ``(B, L)``, True = real token) hides padding from real
        tokens: from attention, from the token shift and from positions; pass None when
        there is none so attention takes its fastest path. ``positions`` default to the
        running count of real tokens (``0..L-1`` without a mask), so padding anywhere in
        a row shifts no real token's position. ``cond`` ``(B,)`` is a noise level
        for time-conditioned models. With ``cache`` (causal only) the new tokens attend
        to everything cached before them and are appended to it; with ``append=False``
        they only read it (their keys go to scratch slots that the next pass overwrites);
        ``append=n`` appends the first n of them and leaves the rest in scratch slots
        (a block decoder caches a finished block and reads the next one in one pass).

        ``attend`` (bool ``(L, L)`` or ``(B, L, L)``, True = query i may attend to key j)
        replaces the causal or bidirectional pattern for this call; padding keys stay
        hidden and every query sees itself. With a cache it covers the new tokens among
        themselves (every cached key stays visible). ``causal`` overrides the model's own
        flag for this call (``False`` with a cache: the new tokens see each other). The
        token shift reads neighbours in input order whatever the pattern.

        ``embeds`` ``(B, L, d_model)`` (plugin API 1.2) replaces the token embedding: the
        positions are vectors the family made itself (CALM's compressed chunks), and
        ``input_ids`` is None. Everything after the embedding is the same.
        """
        causal = self.causal if causal is None else causal
        if (input_ids is None) == (embeds is None):
            raise ValueError("pass either input_ids or embeds")
        x = self.embed(input_ids) if embeds is None else embeds
        positions, attn_mask, is_causal = self._attention_layout(
            x, attention_mask, positions, cache, attend, causal
        )
        c = None
        if self.time_embed is not None:
            if cond is None:
                raise ValueError("this transformer is time-conditioned: pass cond=(B,) noise levels")
            c = self.time_embed(cond)
        rope = rotary_tables(positions, self.inv_freq)
        if self.shift is not None:
            # a padding neighbour reads as zero, like the space beyond either end of the row
            seen = x if attention_mask is None else x.masked_fill(~attention_mask[..., None], 0.0)
            left = F.pad(seen[:, :-1], (0, 0, 1, 0))
            right = F.pad(seen[:, 1:], (0, 0, 0, 1))
            x = x + self.shift(torch.cat([left, right], dim=-1))
        if self.position_embed is not None:
            x = x + self.position_embed(positions.clamp(max=self.position_embed.num_embeddings - 1))
        for i, block in enumerate(self.blocks):
            x = block(x, rope, attn_mask, is_causal, c, cache, i)
        if cache is not None and append:
            cache.advance(x.shape[1] if append is True else append)
        return self.norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.head(hidden)

    def _attention_layout(
        self,
        x: Tensor,
        attention_mask: Tensor | None,
        positions: Tensor | None,
        cache: KVCache | None,
        attend: Tensor | None,
        causal: bool,
    ) -> tuple[Tensor, Tensor | None, bool]:
        """The new tokens' positions and the ``(attn_mask, is_causal)`` of this call (``x``: their
        embeddings ``(B, L, d)``)."""
        b, length = x.shape[:2]
        if cache is not None:
            if not self.causal:
                raise ValueError("a KV cache needs a causal transformer")
            cache.extend(attention_mask, length)
            if positions is None:
                positions = cache.positions(attention_mask, length)
            return positions, *cache.attention_mask(length, causal=causal, attend=attend)
        if positions is None and attention_mask is not None:
            positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        elif positions is None:
            positions = torch.arange(length, device=x.device).expand(b, length)
        if attend is not None:
            return positions, pattern_mask(attention_mask, attend), False
        return positions, *_padding_mask(attention_mask, length, causal, x.device)


def _padding_mask(
    attention_mask: Tensor | None, length: int, causal: bool, device: torch.device
) -> tuple[Tensor | None, bool]:
    if attention_mask is None:
        return None, causal
    return key_query_mask(attention_mask, length, 0, causal=causal, device=device), False


def _init_weights(module: nn.Module) -> None:
    if getattr(module, "_skip_init", False):
        return
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
