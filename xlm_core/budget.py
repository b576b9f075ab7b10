"""How much generation fits in memory: chunk sizes for sampling, and one-line refusals.

A request such as ``--set predictor.max_new_tokens=100000000`` or
``--num-samples 1000000000`` passes every type check but would try to allocate
hundreds of GB, or build a billion prompt lists, and then crash or hang. Before
sampling, the pipeline asks here how many rows one forward pass can hold
(:func:`rows_per_chunk`) and refuses what cannot fit even one row at a time.
The estimate is deliberately rough and generous to the machine (half of what is
free): its job is to stop the absurd, not to squeeze the last row in.
"""

from __future__ import annotations

import os

import torch

from xlm_core.errors import XLMUserError

#: Bytes per element and how many full-vocabulary (logits, probabilities, filtered copies) and
#: hidden-width (activations, KV cache per layer) tensors a decoding step keeps per position.
_FLOAT = 4
_VOCAB_COPIES = 4
_HIDDEN_COPIES = 12
#: What one kept sample costs in Python (token lists, text, history pointers) per token.
_BYTES_PER_KEPT_TOKEN = 200


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: the GPU's free memory, or the host's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # unknown platform: assume a modest machine


def row_bytes(config, vocab_size: int, length: int) -> int:
    """Rough peak memory of one row of length ``length`` in one forward pass."""
    per_position = (
        _VOCAB_COPIES * vocab_size
        + _HIDDEN_COPIES * config.d_model * config.n_layers
        + config.n_heads * length  # attention scores where a mask forces the unfused path
    )
    return _FLOAT * length * per_position


def rows_per_chunk(
    config,
    vocab_size: int,
    *,
    prompt_length: int,
    new_tokens: int,
    batch_size: int,
    device: torch.device,
) -> int:
    """How many rows to decode at once (at most ``batch_size``); refuses when not even one fits."""
    budget = available_memory(device) // 2
    length = prompt_length + new_tokens + 1
    rows = budget // row_bytes(config, vocab_size, length)
    if rows < 1:
        largest = _largest_fitting(config, vocab_size, prompt_length, budget)
        raise XLMUserError(
            f"predictor.max_new_tokens={new_tokens} needs about "
            f"{row_bytes(config, vocab_size, length) / 2**30:.1f} GiB for a single sample, more than "
            f"{device.type} memory allows (about {budget / 2**30:.1f} GiB usable); use at most {largest}"
        )
    return min(batch_size, rows)


def check_sample_count(count: int, new_tokens: int) -> None:
    """Refuse a number of samples whose results alone would not fit in host memory."""
    budget = available_memory(torch.device("cpu")) // 2
    largest = budget // ((new_tokens + 1) * _BYTES_PER_KEPT_TOKEN)
    if count > largest:
        raise XLMUserError(
            f"{count} samples of up to {new_tokens} tokens would not fit in memory; "
            f"ask for at most {largest} at a time (--num-samples)"
        )


def _largest_fitting(config, vocab_size: int, prompt_length: int, budget: int) -> int:
    """The largest ``n`` with ``row_bytes(prompt_length + n + 1) <= budget`` (0 if none)."""

    def fits(n: int) -> bool:
        return row_bytes(config, vocab_size, prompt_length + n + 1) <= budget

    high = 1
    while fits(high):
        high *= 2
    low, high = 0, high - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
