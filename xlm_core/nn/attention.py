"""Attention for the shared backbone: ``scaled_dot_product_attention``, in the dtype that is fastest where it runs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float, is_causal: bool
) -> Tensor:
    """``F.scaled_dot_product_attention``, in float32 on a CPU when its fused kernel will run.

    torch's fused CPU kernel (flash attention; it takes boolean masks too, but no dropout) is
    2-3x slower on bf16 inputs than on float32 ones, forward and backward, at the sizes
    measured (benchmarks/step_profile.py): under bf16 autocast the attention of a text step
    took longer than all its matrix products. Casting q, k, v up and the output back costs
    far less, and the softmax is then computed in float32 too. With dropout the CPU falls
    back to the unfused path, where bf16 is the faster: that one keeps the inputs' dtype.
    A GPU keeps bf16 throughout: its fused kernels are fastest there.
    """
    low = q.dtype in (torch.bfloat16, torch.float16)
    if not (low and q.device.type == "cpu" and dropout_p == 0.0):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
        )
    with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
        out = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=attn_mask, is_causal=is_causal
        )
    return out.to(q.dtype)
