"""Devices and precision: which device a command runs on, and when it computes in bf16.

One policy for training and inference (``training.precision``): ``32`` is fp32,
``bf16-mixed`` and ``16-mixed`` are autocast, and ``auto`` is bf16 autocast
where the device computes bf16 natively (a GPU with native bf16, a CPU with AMX
or AVX512-BF16), fp32 elsewhere. What must stay exact stays in float32 under
autocast: the weights and the optimiser state (Lightning keeps fp32 masters),
the losses' log-softmax and sums (the families cast logits to float32). Training passes
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


@functools.cache
def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16): bf16 matrix products then run
    several times faster than fp32 (benchmarks/precision.py); elsewhere bf16 is emulated and slower."""
    try:  # what torch's own CPU dispatch sees
        capability = torch._C._cpu._get_cpu_capability()
        return bool(capability.get("amx_bf16") or capability.get("avx512_bf16"))
    except (AttributeError, RuntimeError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def training_device_type(training: Any) -> str:
    """``cuda`` or ``cpu``: where Lightning will put the run, as far as precision is concerned."""
    accelerator = str(training.accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto" and torch.cuda.device_count() > 0:  # NVML: CUDA stays uninitialised
        return "cuda"
    return "cpu"


def bf16_native_on(device_type: str, device: torch.device | str = "cuda") -> bool:
    return native_bf16(device) if device_type == "cuda" else cpu_native_bf16()


#: On a CPU, ``auto`` takes bf16 only for models whose largest matrix product is at least this
#: big (d_model x the wider of the MLP and the vocabulary): smaller steps are made of many small
#: operations whose dtype casts cost more than bf16 saves. Measured in benchmarks/precision.py: a
#: 64-wide star model (64 x 256) steps 1.46x slower in bf16; the reference model (384 x 1,536)
#: and the tiny text model (128 x a 4,096 vocabulary) step in 0.43x and 0.45x the fp32 time.
CPU_BF16_MIN_MATMUL = 256 * 1024


def matmul_size(model_config: Any, vocab_size: int | None = None) -> int | None:
    """d_model x max(d_ff, vocabulary): the largest weight matrix of a transformer LM, or None
    for a plugin whose config has no ``d_model``."""
    width = getattr(model_config, "d_model", None)
    if not isinstance(width, int):
        return None
    d_ff = getattr(model_config, "d_ff", None)
    return width * max(d_ff if isinstance(d_ff, int) else 4 * width, vocab_size or 0)


def auto_uses_bf16(
    device_type: str, size: int | None, device: torch.device | str = "cuda"
) -> bool:
    """What ``precision: auto`` means on this device for a model of :func:`matmul_size` ``size``
    (None: unknown, taken as large)."""
    if not bf16_native_on(device_type, device):
        return False
    return device_type == "cuda" or size is None or size >= CPU_BF16_MIN_MATMUL


def lightning_precision(training: Any, size: int | None = None) -> str:
    """Lightning's precision string for ``training.precision`` (``size``: :func:`matmul_size`).

    ``auto`` is bf16 autocast where the device has native bf16 (a recent GPU, or a CPU
    with AMX or AVX512-BF16, for models at least :data:`CPU_BF16_MIN_MATMUL` big) and fp32
    elsewhere. ``bf16-mixed`` asked for on a CPU without native bf16 is refused: emulated
    bf16 is slower than fp32, never faster.
    """
    device_type = training_device_type(training)
    if training.precision == "32":
        return "32-true"
    if training.precision == "auto":
        return "bf16-mixed" if auto_uses_bf16(device_type, size) else "32-true"
    if training.precision == "bf16-mixed" and device_type == "cpu" and not cpu_native_bf16():
        raise XLMUserError(
            "training.precision=bf16-mixed: this CPU has no native bf16 (AMX or AVX512-BF16), so "
            "bf16 would run slower than fp32; use --precision 32 or auto"
        )
    return training.precision


#: On a CPU, ``auto`` decodes in bf16 only when a forward pass is at least this big: the positions
#: it computes (rows x positions per row) x a layer's matrix (d_model x d_ff, :func:`matmul_size`
#: without the vocabulary). A smaller pass, such as a cached left-to-right step of a small model at
#: batch 1, is a few matrix-vector products, slower in bf16 than in fp32. Measured in
#: benchmarks/precision.py ("decoding"): the tiny text model (128 x 512) decodes at 0.66x and 0.87x
#: the fp32 speed in bf16 with 1 and 4 rows (passes of 65k and 262k), 1.09x with 16 (1.0M); the
#: reference model (384 x 1,536) at 1.16x with one row (590k) and 2.46x with 64.
CPU_BF16_MIN_PASS = 512 * 1024


def inference_autocast(
    device: torch.device, precision: str, size: int | None = None, pass_size: int | None = None
) -> contextlib.AbstractContextManager:
    """bf16 autocast for sampling and scoring where the run's precision asks for it and it pays
    (``size``: :func:`matmul_size`; ``pass_size``: a decoding pass's positions x d_model x d_ff,
    None for passes over whole batches of sequences, as scoring makes)."""
    if device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    bf16 = (
        auto_uses_bf16(device.type, size, device)
        and (device.type == "cuda" or pass_size is None or pass_size >= CPU_BF16_MIN_PASS)
        if precision == "auto"
        else precision == "bf16-mixed" and bf16_native_on(device.type, device)
    )
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
