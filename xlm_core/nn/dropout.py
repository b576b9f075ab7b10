"""Dropout whose mask is cheap to draw on a CPU.

torch's CPU dropout draws its mask with ``bernoulli_``: one call of the (sequential)
Mersenne twister per element, about 5 ns each on the 2-core development machine. In the
reference-size training step (d_model 384, dropout 0.1, batch 64) that was a tenth of
the bf16 step, more than all its attention products (benchmarks/step_profile.py). Here
one 64-bit draw makes the mask of four elements: each 16-bit quarter is uniform on
[-32768, 32767] and keeps its element when it is at least ``-32768 + round(p * 65536)``.
The drop probability is thus ``p`` rounded to a multiple of 2^-16 (0.1 becomes
0.1000061), and kept elements are scaled by ``1 / (1 - that)``, so the expectation is
exact in float32; a bf16 mask holds the scale rounded to bf16 (0.16% low at 0.1), as
torch's own CPU dropout does (scaling in float32 instead takes one more pass over the
tensor forward and backward: 1.4-1.6x the time of this function, measured alone). The
draws come from torch's default generator, so ``torch.manual_seed`` (and
``training.seed``) make runs repeat as before. Elsewhere (CUDA, where dropout is one
fused kernel, and inside ``torch.compile``, which fuses its own) this is ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``, with the CPU mask drawn 16 bits an element."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training=True)
    dropped = min(round(p * _LEVELS), _LEVELS - 1)
    n = x.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # all 64 bits
    keep = draws.view(torch.int16)[:n].view(x.shape) >= dropped - _LEVELS // 2
    return x * keep.to(x.dtype).mul_(_LEVELS / (_LEVELS - dropped))


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its CPU masks as :func:`dropout` does."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
