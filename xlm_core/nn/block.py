"""One layer of the shared backbone: pre-norm rotary self-attention and an MLP, each added back
through dropout, with optional adaLN modulation by a condition (a diffusion family's noise
level); and the RMS normalisation it uses, which plugins use for their own layers too."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm_core.nn.attention import attention
from xlm_core.nn.dropout import Dropout
from xlm_core.nn.kv_cache import KVCache
from xlm_core.nn.rotary import rotary


class RMSNorm(nn.Module):
    """RMS normalisation with a learned scale: torch's fused kernel when the input has the weight's
    dtype, else (bf16 activations under autocast, float32 weight) the statistics in float32 by
    plain ops, where ``nn.RMSNorm`` would warn on every call that it cannot fuse mixed dtypes."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if _fused_rms_norm is not None and x.dtype == self.weight.dtype:
            return _fused_rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one kernel, not six
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x.to(dtype) * self.weight


_fused_rms_norm = getattr(F, "rms_norm", None)


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, cond_dim: int | None):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = RMSNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.norm2 = RMSNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_ff, bias=False), nn.GELU(), nn.Linear(d_ff, d_model, bias=False)
        )
        self.dropout = Dropout(dropout)
        # adaLN: the condition predicts shift/scale/gate for both sub-layers; zero-initialised
        # so a conditioned model starts as the unconditioned one.
        self.ada = nn.Linear(cond_dim, 6 * d_model) if cond_dim else None
        if self.ada is not None:
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)
            self.ada._skip_init = True  # keep the zero init when the model applies its default init

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        attn_mask: Tensor | None,
        is_causal: bool,
        cond: Tensor | None,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        if self.ada is None or cond is None:  # unconditioned: no modulation ops on the decoding path
            x = x + self.dropout(self._attend(self.norm1(x), rope, attn_mask, is_causal, cache, layer))
            return x + self.dropout(self.mlp(self.norm2(x)))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.dropout(self._attend(h, rope, attn_mask, is_causal, cache, layer))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.dropout(self.mlp(h))

    def _attend(
        self,
        h: Tensor,
        rope: tuple[Tensor, Tensor],
        attn_mask: Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        b, length, d = h.shape
        qkv = self.qkv(h).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        # split and unbind, not indexing: their gradients are one concatenation, where an index
        # makes a zero-filled gradient of the whole qkv per piece
        qk, v = qkv.split((2, 1))
        q, k = rotary(qk, *rope).unbind(0)
        v = v.squeeze(0)
        if cache is not None:
            k, v = cache.store(layer, k, v)
        p = self.dropout.p if self.training else 0.0
        out = attention(q, k, v, attn_mask, p, is_causal)
        return self.proj(out.transpose(1, 2).reshape(b, length, d))
