"""Sample quality next to sampling speed: a tiny ARLM and a tiny MDLM on one generated corpus.

Both are trained the same number of plain optimiser steps on packed blocks of a generated
text file (no download), then evaluated the way ``xlm eval --judge ... --metric brier`` does:
whole-block samples (EOS separating documents, as in the data) judged by the ARLM, and BrierLM
from two continuations per prefix. ``first-EOS samples/s`` is what sampling cost before whole
blocks: one ``predict`` call per row, stopped at the first EOS. Results go to
``results/sample_quality.json``; docs/benchmarks.md ("Sample quality and speed") shows them.

    python benchmarks/sample_quality.py [--steps 300] [--samples 32]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from xlm_core.config import resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.pipeline import Pipeline
from xlm_core.plugins import get_registry

RESULTS = Path(__file__).parent / "results" / "sample_quality.json"
WORDS = "the cat sat on a mat while dog ran far from home and then it slept".split()
SHOWN = (
    "nfe", "samples_per_s", "tokens_per_s", "mean_doc_length", "data_mean_doc_length", "entropy",
    "data_entropy", "distinct_2", "data_distinct_2", "gen_ppl", "data_gen_ppl", "ppl",
)  # fmt: skip


def trained(name: str, root: Path, steps: int) -> Pipeline:
    """A ``d_model`` 64 model of ``name`` after ``steps`` AdamW steps of 32 blocks of 64 tokens."""
    config = resolve_run_config(
        name,
        sets=[
            "training.precision=32", "model.d_model=64", "model.n_layers=2", "model.n_heads=4",
            "eval.batch_size=32", "task.name=text", f"task.path={root / 'corpus.txt'}",
            "task.block_size=64", "task.vocab_size=300", f"task.cache_dir={root / 'cache'}",
            "predictor.temperature=1.0",  # sample the model, not a greedy decoder
        ],
    )  # fmt: skip
    task, family = build_task(config.task), get_registry().get(name)
    torch.manual_seed(0)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    pipe = Pipeline(
        family=family, run_config=config, model=model, tokenizer=task.tokenizer,
        task_kind=task.kind, shape=task.shape, device="cpu", task=task,
    )  # fmt: skip
    examples, generator = list(task.examples("train")), torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(examples), (32,), generator=generator).tolist()
        loss = pipe.loss(model, pipe.collator([examples[i] for i in rows], generator=generator))
        optimizer.zero_grad()
        loss.loss.backward()
        optimizer.step()
    model.eval()
    return pipe


def measure(pipe: Pipeline, judge: Pipeline, samples: int) -> dict:
    start = time.perf_counter()
    list(pipe.predict_rows([[]] * samples, list(range(samples)), pipe.settings()))
    first_eos = samples / (time.perf_counter() - start)
    figures = pipe.evaluate("test", samples, judge=judge, progress=False)
    brier = pipe.brier("test", samples, prefixes=4)
    return {
        "first_eos_samples_per_s": first_eos,
        **{key: figures[key] for key in SHOWN},
        **{key: brier[key] for key in ("brier_1", "brier_4", "brier_lm", "brier_samples_per_s")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = random.Random(1)
        docs = (" ".join(rng.choices(WORDS, k=rng.randint(4, 30))) for _ in range(3000))
        (root / "corpus.txt").write_text("\n".join(docs))
        arlm = trained("arlm", root, args.steps)
        results = {"steps": args.steps, "samples": args.samples, "families": {}}
        for name in ("arlm", "mdlm"):
            pipe = arlm if name == "arlm" else trained(name, root, args.steps)
            results["families"][name] = measure(pipe, arlm, args.samples)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for name, row in results["families"].items():
        print(name, " · ".join(f"{k} {v:.3g}" for k, v in row.items()))


if __name__ == "__main__":
    main()
