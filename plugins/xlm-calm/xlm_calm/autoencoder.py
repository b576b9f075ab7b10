"""The chunk autoencoder: K tokens <-> one latent vector (Shao et al. 2025, section 2.1).

Encoder: token embeddings, residual MLP layers applied to each token, a linear layer
that squeezes the K token vectors (concatenated) into one, residual MLP layers on that
vector, then the posterior's mean and log standard deviation. Decoder: the mirror
image, from a latent vector to K token states, read out through the encoder's
embedding (tied, as the authors'). No attention: a chunk is short, and everything a
token needs from the others passes through the squeeze.

The training objective (reconstruction, KL, token masking, latent dropout) is the
loss's (``loss.py``); this module only maps tensors.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from xlm_calm.config import CALMConfig
from xlm_core.nn.transformer import RMSNorm


class GatedMLP(nn.Module):
    """``x + W_down(silu(W_gate n(x)) * W_up n(x))``: a pre-norm residual SwiGLU layer."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = RMSNorm(width)
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(self.norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


def _stack(n: int, width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(*(GatedMLP(width, hidden) for _ in range(n)))


class ChunkAutoencoder(nn.Module):
    """``posterior(chunks (..., K)) -> (mean, log_std)`` each ``(..., latent)``;
    ``decode(latents (..., latent)) -> logits (..., K, V)``."""

    def __init__(self, config: CALMConfig, vocab_size: int):
        super().__init__()
        k, width, hidden = config.chunk_size, config.ae_width, config.ae_hidden
        per_token = config.ae_layers // 2
        per_chunk = config.ae_layers - per_token
        self.k, self.width, self.latent_size = k, width, config.latent_size
        self.embed = nn.Embedding(vocab_size, width)
        self.encode_tokens = _stack(per_token, width, hidden)
        self.squeeze = nn.Linear(k * width, width)
        self.encode_chunk = _stack(per_chunk, width, hidden)
        self.encode_norm = RMSNorm(width)
        self.to_latent = nn.Linear(width, 2 * config.latent_size)
        self.from_latent = nn.Linear(config.latent_size, width)
        self.decode_chunk = _stack(per_chunk, width, hidden)
        self.expand = nn.Linear(width, k * width)
        self.decode_tokens = _stack(per_token, width, hidden)
        self.decode_norm = RMSNorm(width)
        self.apply(init_weights)

    def posterior(self, chunks: Tensor) -> tuple[Tensor, Tensor]:
        """The diagonal Gaussian q(z | chunk): ``mean`` and ``log_std``."""
        h = self.encode_tokens(self.embed(chunks))
        h = self.encode_chunk(self.squeeze(h.flatten(-2)))
        mean, log_std = self.to_latent(self.encode_norm(h)).chunk(2, dim=-1)
        return mean, log_std

    def decode(self, latents: Tensor) -> Tensor:
        h = self.decode_chunk(self.from_latent(latents))
        h = self.expand(h).unflatten(-1, (self.k, self.width))
        return F.linear(self.decode_norm(self.decode_tokens(h)), self.embed.weight)


def init_weights(module: nn.Module) -> None:
    """The authors' initialisation (their models' ``post_init``): N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
