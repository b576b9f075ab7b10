"""The generator: a causal transformer over chunks and an energy-based head (Shao et al. 2025, section 3).

A chunk's input is its K tokens, re-embedded (the transformer's own token embedding,
concatenated, then a small MLP down to one d_model vector): the tokens the autoencoder
decoded, not the vector that was predicted, as the authors found works better. The
shared rotary transformer (``xlm_core.nn.transformer``) runs over these vectors, one
position per chunk (``Transformer.forward(embeds=...)``, plugin API 1.2), so its KV
cache and attention masks are the core's.

The head maps a hidden state and uniform noise in [-1/2, 1/2]^noise_size to a latent
vector: residual MLP blocks refine the embedded noise, each reading the hidden state;
the output layer starts at zero. One hidden state and n noise draws give n samples of
the next chunk's vector, at the cost of the head alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm_calm.autoencoder import init_weights
from xlm_calm.config import CALMConfig
from xlm_core.nn.kv_cache import KVCache
from xlm_core.nn.transformer import Transformer


class HeadBlock(nn.Module):
    """``x + down(silu(gate) * up)``, gate and up an MLP of ``[norm(x); context]``."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(2 * width, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, 2 * width),
        )
        self.down = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        gate, up = self.mlp(torch.cat([self.norm(x), context], dim=-1)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class EnergyHead(nn.Module):
    """``head(hidden (..., d), noise (..., noise_size)) -> latent (..., latent_size)``."""

    def __init__(self, width: int, noise_size: int, latent_size: int, n_blocks: int):
        super().__init__()
        self.noise_in = nn.Linear(noise_size, width)
        self.noise_norm = nn.LayerNorm(width, eps=1e-6)
        self.context_in = nn.Linear(width, width)
        self.context_norm = nn.LayerNorm(width, eps=1e-6)
        self.blocks = nn.ModuleList(HeadBlock(width) for _ in range(n_blocks))
        self.out = nn.Sequential(
            nn.LayerNorm(width, eps=1e-6),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, latent_size),
        )

    def forward(self, hidden: Tensor, noise: Tensor) -> Tensor:
        x = self.noise_norm(self.noise_in(noise))
        context = self.context_norm(self.context_in(hidden)).expand_as(x)
        for block in self.blocks:
            x = block(x, context)
        return self.out(x)


class ChunkGenerator(nn.Module):
    def __init__(self, config: CALMConfig, vocab_size: int):
        super().__init__()
        d, k = config.d_model, config.chunk_size
        self.k, self.noise_size = k, config.noise_size
        # tied: the generator never predicts a token, so an untied vocabulary head would be a matrix
        # that nothing uses (tie_embeddings changes nothing here; see CALMConfig)
        self.backbone = Transformer(
            vocab_size,
            d_model=d,
            n_layers=config.n_layers,
            n_heads=config.n_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            causal=True,
            tie_embeddings=True,
            learned_positions=config.learned_positions,
        )
        self.compress = nn.Sequential(
            nn.Linear(k * d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d), nn.LayerNorm(d, eps=1e-6)
        )
        self.head = EnergyHead(d, config.noise_size, config.latent_size, config.head_layers)
        self.compress.apply(init_weights)
        self.head.apply(init_weights)
        # the head starts by predicting the origin for every input, as the authors' does
        nn.init.zeros_(self.head.out[-1].weight)
        nn.init.zeros_(self.head.out[-1].bias)

    def hidden(
        self,
        chunks: Tensor,
        chunk_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> Tensor:
        """``(B, C, d)`` hidden states of chunks ``(B, C, K)``; the state at chunk c predicts chunk c + 1.

        ``chunk_mask`` ``(B, C)`` hides chunks of padding (positions count real chunks); with
        ``cache`` the chunks attend to every cached chunk and are appended to it.
        """
        embeds = self.compress(self.backbone.embed(chunks).flatten(-2))
        return self.backbone(None, chunk_mask, embeds=embeds, cache=cache)

    def sample(self, hidden: Tensor, noise: Tensor) -> Tensor:
        """Latent vectors ``(..., n, latent)`` for hidden states ``(..., d)`` and noise ``(..., n, noise_size)``
        uniform in [0, 1) (shifted here to the head's [-1/2, 1/2))."""
        return self.head(hidden.unsqueeze(-2), (noise - 0.5).to(hidden.dtype))

    def new_cache(self, batch_size: int, max_chunks: int, device: torch.device | str) -> KVCache:
        return self.backbone.new_cache(batch_size, max_chunks, device)
