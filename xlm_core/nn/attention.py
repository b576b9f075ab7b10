"""Attention for the shared backbone: ``scaled_dot_product_attention``, in the dtype that is fastest where it runs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xlm_core.nn.dropout import dropout


def attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float, is_causal: bool
) -> Tensor:
    """``F.scaled_dot_product_attention``, computed the way that is fastest on a CPU.

    torch's fused CPU kernel (flash attention; it takes boolean masks too, but no dropout) is
    2-3x slower on bf16 inputs than on float32 ones, forward and backward, at the sizes
    measured (benchmarks/step_profile.py): under bf16 autocast the attention of a text step
    took longer than all its matrix products. Casting q, k, v up and the output back costs
    far less, and the softmax is then computed in float32 too. With dropout the CPU has no
    fused kernel and torch's fallback copies q, k, v to float32 and draws its mask one
    element at a time; :func:`_explicit_attention` computes the products in the inputs'
    dtype with a cheap mask, about half the time forward and backward in the reference
    step (in bf16 the scores are rounded to bf16 before their float32 softmax, which the
    fused kernels avoid: 0.6% relative error in the output against 0.4% for torch's
    float32 fallback). A GPU keeps bf16 throughout: its fused kernels are fastest there.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
        )
    if dropout_p > 0.0:
        return _explicit_attention(q, k, v, attn_mask, dropout_p, is_causal)
    if q.dtype not in (torch.bfloat16, torch.float16):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
        out = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=attn_mask, is_causal=is_causal
        )
    return out.to(q.dtype)


def _explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float, is_causal: bool
) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask) with dropout, times v: the products in the inputs' dtype,
    the softmax in float32 (as Hugging Face's eager attention does); ``is_causal`` and a
    boolean ``attn_mask`` mean what they mean to ``scaled_dot_product_attention``."""
    scores = torch.matmul(q, k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
    if is_causal:  # top-left aligned, as scaled_dot_product_attention's is_causal
        future = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu_(1)
        scores = scores.masked_fill(future, float("-inf"))
    if attn_mask is not None:  # the backbone's masks are boolean (True: may attend)
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    probs = scores.softmax(-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(dropout(probs, dropout_p), v)
