"""Devices and precision: which device a command runs on, and when it computes in bf16.

One policy for training and inference (``training.precision``): ``32`` is fp32,
``bf16-mixed`` and ``16-mixed`` are autocast, and ``auto`` is bf16 autocast
where the device computes bf16 natively, fp32 elsewhere. Training passes
:func:`lightning_precision` to Lightning; ``xlm generate``/``xlm eval`` and the
end-of-run evaluation enter :func:`inference_autocast`.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from typing import Any

import torch

from xlm_core.errors import XLMUserError

_ASK_BF16 = (
    "import sys, torch; torch.cuda.set_device(int(sys.argv[1])); "
    "print(torch.cuda.is_bf16_supported(including_emulation=False))"
)


@functools.cache
def native_bf16(device: torch.device | str = "cuda") -> bool:
    """Whether a CUDA device has native bf16 (emulated bf16, on a V100 or T4, is slower than fp32).

    Asked without initialising CUDA in this process when it is not yet: a launcher that
    forks its workers needs it uninitialised, so the question goes to a short subprocess.
    """
    if torch.cuda.device_count() == 0:  # counts through NVML, without initialising CUDA
        return False
    index = torch.device(device).index
    if torch.cuda.is_initialized():
        with torch.cuda.device(torch.cuda.current_device() if index is None else index):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        answer = subprocess.run(
            [sys.executable, "-c", _ASK_BF16, str(index or 0)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return answer.stdout.strip() == "True"


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` (cpu, cuda, cuda:1, ...) if this machine has it; None: cuda if available, else cpu."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        message = f"device {str(device)!r} is not a device name (cpu, cuda, cuda:1, ...)"
        raise XLMUserError(message) from None
    if resolved.type == "cpu":
        return resolved
    accelerator = torch.accelerator.current_accelerator()
    count = torch.accelerator.device_count() if accelerator is not None else 0
    if accelerator is None or accelerator.type != resolved.type or (resolved.index or 0) >= count:
        here = "no accelerator" if accelerator is None else f"{count} {accelerator.type} device(s)"
        raise XLMUserError(f"device {str(device)!r} is not available here ({here}); use cpu")
    return resolved


def lightning_precision(training: Any) -> str:
    """Lightning's precision string for ``training.precision``."""
    if training.precision == "32":
        return "32-true"
    if training.precision != "auto":
        return training.precision
    on_cuda = training.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_cuda and native_bf16() else "32-true"


def inference_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for sampling and scoring where the run's precision asks for it and the device has it."""
    if device.type == "cuda" and precision in ("auto", "bf16-mixed") and native_bf16(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
