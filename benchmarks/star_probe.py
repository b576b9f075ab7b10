"""What a fixed-window denoiser (MDLM, MLM) has learned about star-easy paths.

A star-easy target is ``source n1 n1 n2 n2 n3 n3 goal`` (each edge of the path
written out, so every inner node appears twice), then EOS. This script hides
chosen window positions of real test examples, runs one forward pass, and
reports the greedy accuracy at each hidden position:

- one position hidden: its twin is visible, so copying it is enough;
- one twin pair hidden (both neighbours visible): the node must be found by
  following an edge of the prompt from a neighbour (``n2`` is the successor of
  ``n1`` and the predecessor of ``n3``);
- the whole window hidden: the first step of decoding.

A model that only copies twins scores 1.0 on the first line and about chance
(1 in the ~13 nodes of the graph) on the second. That tells a stalled run
("has not learned to follow an edge") from a sampler problem.

    python benchmarks/star_probe.py --checkpoint runs/NAME/final [--limit 1000]

Writes benchmarks/results/star_probe.json (one entry per checkpoint, replaced
when the same checkpoint is probed again) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from _star import ROOT

import xlm_core
from xlm_core.nn.window import left_pad, prompt_width, target_window

RESULTS = ROOT / "benchmarks" / "results" / "star_probe.json"
PATTERNS: dict[str, list[int]] = {
    **{f"one hidden: {c}": [c] for c in range(8)},
    "pair hidden: 1,2 (n1)": [1, 2],
    "pair hidden: 3,4 (n2)": [3, 4],
    "pair hidden: 5,6 (n3)": [5, 6],
    "all hidden": list(range(9)),
}


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def probe(checkpoint: Path, limit: int) -> dict[str, list[float]]:
    pipeline = xlm_core.load(checkpoint, device="cpu")
    if pipeline.run_config.plugin not in ("mdlm", "mlm"):
        fail(
            f"{checkpoint}: the probe reads mdlm and mlm windows, not {pipeline.run_config.plugin}"
        )
    if pipeline.task.name != "star-easy":
        fail(f"{checkpoint}: trained on {pipeline.task.name}, not star-easy")
    vocab, model = pipeline.vocab, pipeline.model.eval()
    examples = list(pipeline.task.examples("test"))[:limit]
    prompts = [e.prompt_ids for e in examples]
    prompt_ids, _ = left_pad(prompts, prompt_width(prompts, pipeline.shape), vocab.pad_id)
    clean = target_window([e.target_ids for e in examples], vocab, pipeline.shape)
    accuracy: dict[str, list[float]] = {}
    for name, columns in PATTERNS.items():
        window = clean.clone()
        window[:, columns] = vocab.mask_id
        with torch.no_grad():
            logits = model(torch.cat([prompt_ids, window], dim=1)).logits[:, -window.shape[1] :]
        guess = logits.argmax(-1)
        accuracy[name] = [
            round((guess[:, c] == clean[:, c]).float().mean().item(), 4) for c in columns
        ]
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=1000, help="test examples")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    accuracy = probe(args.checkpoint, args.limit)

    print(f"{args.checkpoint} ({args.limit} star-easy test examples, greedy, one forward pass)\n")
    print("| hidden | accuracy at each hidden position |\n|---|---|")
    for name, values in accuracy.items():
        print(f"| {name} | {' '.join(f'{v:.3f}' for v in values)} |")

    results = (
        json.loads(args.out.read_text())
        if args.out.is_file()
        else {"benchmark": "star_probe", "runs": []}
    )
    results["runs"] = [r for r in results["runs"] if r["checkpoint"] != str(args.checkpoint)]
    results["runs"].append(
        {"checkpoint": str(args.checkpoint), "n_examples": args.limit, "accuracy": accuracy}
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
