"""Cross-entropy over a large vocabulary, a block of rows at a time, in float32 whatever the logits' dtype.

``F.cross_entropy(logits.float(), ...)`` materialises the whole ``(N, V)`` logits
in float32 (under bf16 autocast a copy twice the size of the logits), then a
log-softmax of the same size that autograd keeps for the backward pass, then a
zero-filled gradient of that size again. With a text vocabulary (V = 4,096) these
tensors are hundreds of megabytes per step and the step spends its time moving them
rather than computing.

:func:`token_nll` computes the same numbers block by block: the float32 softmax of
a block of rows exists only while that block is processed (a few megabytes, which
stay in cache), the forward pass keeps nothing but the logits autograd already
holds, and the backward pass writes the gradient once, in the logits' dtype.
Each block is cast to float32 before its softmax or log-softmax, so bf16 logits lose
nothing beyond their own rounding (benchmarks/step_profile.py measures both the time
and the difference).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xlm_core.components import IGNORE_INDEX

#: Logit entries per block (float32: 4 MiB); 256 rows of a 4,096-entry vocabulary. Smaller
#: blocks pay a kernel launch per block, larger ones fall out of cache (step_profile.py).
BLOCK_ELEMENTS = 2**20


def token_nll(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``-log softmax(logits)[target]`` per row, float32, exactly 0 where ``targets == ignore_index``.

    ``logits`` ``(..., V)`` in any floating dtype; ``targets`` has the leading shape
    of ``logits``. The result has that shape too; its ``.sum()`` is what
    ``F.cross_entropy(logits.float(), targets, reduction="sum")`` gives.
    """
    flat, shape = logits.reshape(-1, logits.shape[-1]), targets.shape
    return _BlockwiseNLL.apply(flat, targets.reshape(-1), ignore_index).view(shape)


def block_rows(vocab_size: int) -> int:
    """Rows per block for a vocabulary of ``vocab_size`` entries."""
    return max(1, BLOCK_ELEMENTS // max(1, vocab_size))


class _BlockwiseNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        ignored = targets == ignore_index
        safe = targets.masked_fill(ignored, 0)  # any valid class: its term is zeroed below
        nll = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        rows = block_rows(logits.shape[1])
        for start in range(0, logits.shape[0], rows):
            block = slice(start, start + rows)
            # cast, then log-softmax: log_softmax(dtype=float32) on bf16 takes a path ~5x slower
            log_probs = torch.log_softmax(logits[block].float(), dim=-1)
            nll[block] = log_probs.gather(1, safe[block, None]).squeeze(1)
        ctx.save_for_backward(logits, safe, ignored)
        return nll.neg_().masked_fill_(ignored, 0.0)

    @staticmethod
    def backward(ctx, grad_nll: Tensor) -> tuple[Tensor, None, None]:
        logits, safe, ignored = ctx.saved_tensors
        # d nll / d logits = softmax - onehot(target), scaled by the incoming gradient per row
        scale = grad_nll.float().masked_fill(ignored, 0.0)[:, None]
        grad = torch.empty_like(logits)
        rows = block_rows(logits.shape[1])
        for start in range(0, logits.shape[0], rows):
            block = slice(start, start + rows)
            probs = torch.softmax(logits[block].float(), dim=-1)
            probs.scatter_add_(1, safe[block, None], torch.full_like(scale[block], -1.0))
            grad[block] = probs.mul_(scale[block])
        return grad, None, None
