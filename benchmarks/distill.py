"""Distillation from an autoregressive teacher: MLM and MDLM trained on its outputs vs on the data.

Sequence-level knowledge distillation (Kim & Rush 2016) is the standard way to train
mask-predict models (Ghazvininejad et al. 2019): the student learns the teacher's
one mode per input instead of every mode of the data. For each task:

1. train an ARLM teacher;
2. ``xlm distill`` its outputs: star-easy, its greedy answer to every training prompt;
   text, unconditional samples (as many as the corpus has training blocks, or
   ``--text-samples``);
3. train MLM and MDLM with the same preset and steps twice, on the original task and on
   ``--task distilled``;
4. ``xlm eval --split test`` every model. Both arms are measured on the original test
   split (the distilled task keeps it): sequence and token accuracy (star), per-token
   NLL (bound) and perplexity (text), and forward passes per sample (nfe); on text also
   BrierLM (``--metric brier``, sampled at temperature 1 whatever the family's default,
   since two greedy continuations always agree), the one quality figure MLM has.

Star-easy uses the ``star`` preset (docs/benchmarks.md); text the ``tiny`` preset for
``--text-steps`` steps on ``--corpus`` (the Python documentation by default,
benchmarks/python_docs_corpus.py). A finished run in ``--work`` is reused when trained with the same settings.

    python benchmarks/distill.py [--tasks star-easy,text] [--corpus python-docs] [--limit 1000]
                                 [--text-steps 3000] [--star-steps N] [--quick] [--out FILE]

``--quick`` trains 20 steps of ``tiny`` everywhere, distils 256 examples and evaluates 32,
all in a temporary directory: a smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _corpus import add_corpus_argument, corpus_task
from _results import finished_run, sets

from xlm_core.config import resolve_run_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill.json"
STUDENTS = ("mlm", "mdlm")
BRIER_KEYS = ("brier_1", "brier_2", "brier_3", "brier_4", "brier_lm", "brier_prefixes")
XLM = shutil.which("xlm") or str(Path(sys.executable).with_name("xlm"))


def xlm(*args: str, capture: bool = True) -> str:
    """Run ``xlm ARGS`` (its progress on our stderr) and return what it printed on stdout, or,
    without ``capture``, send that to our stderr too: a long training run's progress is not held
    in memory, and the run does not die of a broken pipe if this script is stopped."""
    print("$ xlm " + " ".join(args), file=sys.stderr, flush=True)
    out = subprocess.PIPE if capture else sys.stderr
    return subprocess.run([XLM, *args], check=True, stdout=out, text=True).stdout or ""


def train(plugin: str, run_dir: Path, task: tuple[str, list[str]], setting: dict[str, Any], quick: bool) -> Path:
    """The final checkpoint of ``plugin`` trained on ``task`` (its name and settings) in ``run_dir``
    with the preset and steps of ``setting``; reused when finished with those same settings."""
    name, items = task
    items = [*items, *([f"training.max_steps={setting['steps']}"] if setting["steps"] else [])]
    items += ["eval.val_predict_limit=8"] if quick else []
    if not finished_run(run_dir, resolve_run_config(plugin, preset=setting["preset"], task=name, sets=items)):
        xlm("train", "--plugin", plugin, "--preset", setting["preset"], "--task", name, *sets(items),
            "--out", str(run_dir), "--overwrite", capture=False)  # fmt: skip
    return run_dir / "final"


def evaluate(checkpoint: Path, limit: int, brier: bool) -> dict[str, Any]:
    start = time.perf_counter()
    test = ["--checkpoint", str(checkpoint), "--split", "test", "--limit", str(limit), "--json"]
    metrics = json.loads(xlm("eval", *test))
    if brier:
        drawn = json.loads(xlm("eval", *test, "--metric", "brier", *sets(["predictor.temperature=1"])))
        metrics.update({key: drawn.get(key) for key in BRIER_KEYS})
    return {**metrics, "eval_seconds": time.perf_counter() - start}


def distill(teacher: Path, task: str, out: Path, limit: int | None, greedy: bool) -> dict[str, Any]:
    if not (out / "distilled.json").is_file():
        shutil.rmtree(out, ignore_errors=True)  # an interrupted earlier attempt
        extra = (["--limit", str(limit)] if limit else []) + (sets(["predictor.temperature=0"]) if greedy else [])
        xlm("distill", "--teacher", str(teacher), "--task", task, "--out", str(out), *extra)
    return json.loads((out / "distilled.json").read_text())


def task_settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """How one benchmark task is trained: its ``xlm train`` task arguments, steps and distillation."""
    if name == "star-easy":
        return {"task": ("star-easy", []), "preset": "tiny" if args.quick else "star",
                "steps": 20 if args.quick else None, "student_steps": 20 if args.quick else args.star_steps,
                "limit": 256 if args.quick else None, "greedy": True}  # fmt: skip
    text = ["task.vocab_size=4096", "task.block_size=128", f"task.cache_dir={args.work / 'cache'}"]
    steps = 20 if args.quick else args.text_steps
    return {"task": ("text", [*corpus_task(args.corpus), *text]), "preset": "tiny",
            "steps": steps, "student_steps": steps,
            "limit": 64 if args.quick else args.text_samples, "greedy": False}  # fmt: skip


def run_task(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Teacher, distilled data, and the four students of one task: one row per model."""
    setting, root = task_settings(name, args), args.work / name
    teacher = train("arlm", root / "teacher-arlm", setting["task"], setting, args.quick)
    students = {**setting, "steps": setting["student_steps"]}
    record = distill(teacher, name, root / "distilled", setting["limit"], setting["greedy"])
    brier = name == "text"
    rows = [{**evaluate(teacher, args.limit, brier), "task": name, "model": "arlm", "data": "original (teacher)"}]
    arms = {"original": setting["task"], "distilled": ("distilled", [f"task.path={root / 'distilled'}"])}
    for plugin in STUDENTS:
        for arm, task in arms.items():
            final = train(plugin, root / f"{plugin}-{arm}", task, students, args.quick)
            rows.append({**evaluate(final, args.limit, brier), "task": name, "model": plugin, "data": arm})
    for row in rows:
        row["distilled_examples"] = record["examples"]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table docs/benchmarks.md quotes."""
    lines = ["| task | model | trained on | seq acc | token acc | NLL | ppl | Brier-1 | BrierLM | nfe |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        cells = [_cell(r.get(k)) for k in ("seq_acc", "token_acc", "nll", "ppl", "brier_1", "brier_lm", "nfe")]
        lines.append(f"| {r['task']} | {r['model']} | {r['data']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _earlier_report(args: argparse.Namespace) -> dict[str, Any]:
    """``--out`` of a full earlier run, whose other tasks' rows are kept (``--tasks star-easy``
    leaves the text rows in place)."""
    if args.quick or not args.out.is_file():
        return {}
    earlier = json.loads(args.out.read_text())
    return {} if earlier.get("quick") else earlier


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="star-easy,text", help="comma-separated: star-easy, text")
    add_corpus_argument(parser, default="python-docs")
    parser.add_argument("--limit", type=int, default=1000, help="test examples evaluated per model")
    parser.add_argument("--text-steps", type=int, default=3000, help="training steps of every text model")
    parser.add_argument("--star-steps", type=int, default=None,
                        help="training steps of the star-easy students, both arms (default: each family's "
                        "star preset; the teacher always trains its preset)")  # fmt: skip
    parser.add_argument("--text-samples", type=int, default=None,
                        help="teacher samples for text (default: as many as the corpus has training blocks)")
    parser.add_argument("--work", type=Path, help="runs and data, reused when finished "
                        "(default: runs/bench-distill; with --quick a temporary directory)")
    parser.add_argument("--quick", action="store_true", help="20 steps of tiny, 256 examples, temp dir")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    unknown = set(filter(None, args.tasks.split(","))) - {"star-easy", "text"}
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(sorted(unknown))}; choose from star-easy, text")
    if args.quick:  # never overwrite measured results with a smoke run
        scratch = Path(tempfile.mkdtemp(prefix="xlm-distill-bench-"))
        args.work, args.out, args.limit = args.work or scratch / "work", scratch / args.out.name, 32
    args.work = args.work or ROOT / "runs" / "bench-distill"
    return args


def main() -> None:
    args = parse_args()
    earlier = _earlier_report(args)
    names = list(filter(None, args.tasks.split(",")))
    rows = [row for row in earlier.get("rows", []) if row["task"] not in names]
    tasks = {name: run for name, run in earlier.get("tasks", {}).items() if name not in names}
    for name in names:
        start = time.perf_counter()
        rows += run_task(name, args)
        tasks[name] = {"minutes": (time.perf_counter() - start) / 60, "limit": args.limit,
                       **({"corpus": args.corpus} if name == "text" else {"student_steps": args.star_steps})}  # fmt: skip
    report = {"benchmark": "distill", "quick": args.quick, "platform": platform.platform(), "tasks": tasks, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
