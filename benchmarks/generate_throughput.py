"""ARLM decoding throughput: KV-cached vs uncached (the whole prefix recomputed at every step).

Decodes a fixed number of new tokens at batch 1 and batch 16, with and without the
cache, and reports tokens/s and the cached/uncached speed-up measured in the same
run. Weights are random: speed does not depend on what the model learned. Every
row decodes exactly the requested number of tokens because EOS is banned until
then (``min_new_tokens = max_new_tokens``), so both paths do the same number of
steps. Decoding is greedy, and the script checks that both paths produce the same
tokens. The two paths alternate and each keeps its best run (the one least
disturbed by other work on the machine). Goal: speed-up >= 5 at batch 1.

    python benchmarks/generate_throughput.py [--device cpu|cuda] [--quick] [--threads N]

Writes benchmarks/results/generate_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from xlm_arlm.config import ARLMConfig, ARLMSettings
from xlm_arlm.model import ARLMModel
from xlm_arlm.predictor import ARLMPredictor

from xlm_core.components import DataShape, Vocab

RESULTS = Path(__file__).parent / "results" / "generate_throughput.json"
VOCAB = Vocab(size=1024, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
GOAL = 5.0
BATCHES = (1, 16)


def main() -> None:
    args = _arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        config, new_tokens, prompt_length = ARLMConfig(d_model=64, n_layers=2, n_heads=4), 32, 16
    else:
        config, new_tokens, prompt_length = ARLMConfig(d_model=256, n_layers=4, n_heads=4), 128, 32

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # a busy machine skews timings
    torch.manual_seed(0)
    model = ARLMModel(config, VOCAB).to(args.device).eval()
    decoder = _Decoder(model, DataShape(prompt_length, new_tokens), args.device)
    decoder.decode(1, True), decoder.decode(1, False)  # warm-up: allocator, kernels, thread pool
    rows = [_measure(decoder, batch, args.repeats) for batch in BATCHES]

    result = {
        "benchmark": "generate_throughput",
        "quick": args.quick,
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": load,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": {
            "d_model": config.d_model,
            "n_layers": config.n_layers,
            "n_heads": config.n_heads,
            "vocab_size": VOCAB.size,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "prompt_length": prompt_length,
        "new_tokens": new_tokens,
        "decoding": "greedy; EOS banned until new_tokens (min_new_tokens = max_new_tokens)",
        "timing": f"best of {args.repeats} alternating runs per path after a warm-up (uncached batch 16: one run)",
        "results": rows,
        "goal": f"speedup >= {GOAL:g} at batch 1",
        "goal_met": rows[0]["speedup"] >= GOAL,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"batch-1 speed-up {rows[0]['speedup']}x (goal >= {GOAL:g}x: {'met' if result['goal_met'] else 'NOT met'})"
    )
    print(f"wrote {args.out}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--quick", action="store_true", help="small model, 32 tokens: a smoke run in seconds"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each path (uncached batch 16: one)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


class _Decoder:
    """Greedy decoding of ``shape.target_length`` new tokens after random prompts, timed."""

    def __init__(self, model: ARLMModel, shape: DataShape, device: str):
        self.model, self.shape, self.device = model, shape, device
        self.predictor = ARLMPredictor(model.config, VOCAB, shape)

    def decode(self, batch: int, kv_cache: bool) -> tuple[float, list[list[int]]]:
        new_tokens, n_special = self.shape.target_length, len(VOCAB.special_ids)
        g = torch.Generator().manual_seed(batch)
        prompts = torch.randint(
            n_special, VOCAB.size, (batch, self.shape.prompt_length), generator=g
        ).tolist()
        settings = ARLMSettings(
            temperature=0.0,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            kv_cache=kv_cache,
        )
        _sync(self.device)
        start = time.perf_counter()
        out = self.predictor.predict(self.model, prompts, settings=settings, seeds=range(batch))
        _sync(self.device)
        elapsed = time.perf_counter() - start
        assert out.lengths.tolist() == [new_tokens] * batch  # EOS banned: both paths do every step
        return elapsed, out.sequences()


def _measure(decoder: _Decoder, batch: int, repeats: int) -> dict[str, object]:
    """Both paths at one batch size, alternating; each keeps its best run."""
    times: dict[bool, list[float]] = {True: [], False: []}
    tokens: dict[bool, list[list[int]]] = {}
    for r in range(repeats):
        for kv_cache in (True, False):
            # Uncached decoding at batch 16 is the slow cell (a minute or more on a laptop CPU).
            if kv_cache or batch == 1 or r == 0:
                elapsed, tokens[kv_cache] = decoder.decode(batch, kv_cache)
                times[kv_cache].append(elapsed)
    cached, uncached = min(times[True]), min(times[False])
    new_tokens = decoder.shape.target_length
    row = {
        "batch": batch,
        "cached_s": round(cached, 4),
        "uncached_s": round(uncached, 4),
        "cached_tokens_per_s": round(batch * new_tokens / cached, 1),
        "uncached_tokens_per_s": round(batch * new_tokens / uncached, 1),
        "speedup": round(uncached / cached, 2),
        "identical_tokens": tokens[True] == tokens[False],
    }
    print(
        f"batch {batch:2d}: cached {row['cached_tokens_per_s']:9.1f} tok/s   "
        f"uncached {row['uncached_tokens_per_s']:8.1f} tok/s   speed-up {row['speedup']:6.2f}x   "
        f"identical tokens: {row['identical_tokens']}"
    )
    return row


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
