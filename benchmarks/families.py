"""Every installed family, one backbone and one budget, several seeds: star-easy and real text in one table.

For each seed and each family found by the plugin registry (``xlm plugins list``):

(a) star-easy: ``xlm train --plugin F --preset star`` with the same number of steps for every
    family (the ``star`` presets share the backbone: d_model 64, 4 layers, 4 heads, learned
    positions; MDLM's and ILM's add their token shift), then the test prompts decoded once per
    value of the family's ``predictor.sampler`` (each with the family's defaults for the rest,
    as ``xlm plugins show F`` lists them; a family without that setting decodes greedily):
    sequence and token accuracy, forward passes (NFE) and samples/s;
(b) text, the prose of the Python documentation (``python_docs_corpus.py``): every family with
    the same backbone, optimiser and steps, then ``xlm eval --judge <the ARLM of the same seed>
    --metric default --metric brier`` at temperature 1, each family's default sampler: per-token
    NLL with its kind (exact, bound, none), BrierLM, gen-PPL, unigram entropy and samples/s.

A family that trains in stages (a ``model.stage`` setting, plugin API 1.2: CALM) trains every
stage for the same budget, each stage after the first ``--init-from`` the one before; its training
seconds are the stages' sum.

It prints two markdown tables (mean ± std over the seeds), writes the JSON (the commands, seeds,
budgets, wall times and whether other work shared the machine) and two plots: accuracy vs NFE per
family and sampler, and validation curves (the runs' ``logs/version_N/metrics.csv``) against
training wall time. Finished runs in ``--work`` are reused (when trained with the same resolved settings: a
preset changed since trains anew), so an interrupted benchmark resumes.

    python benchmarks/families.py --quick     # about 30 min on a 2-core CPU; docs/benchmarks.md
    python benchmarks/families.py --full      # for a GPU: see --help for the budget

Sizes (every family alike within a task):

- ``--quick``: star-easy 400 steps, 300 test prompts per sampler; text d_model 64, 4 layers,
  4 heads, blocks of 64 tokens, a 2,048-token BPE vocabulary, 160 steps of batch 64, 32 test
  blocks for gen-PPL and entropy, 16 blocks x 2 cuts for BrierLM. Far from converged: it shows
  the pipeline and the speed/quality trade-off, not which family wins.
- ``--full`` (a GPU; not run on the CPU box): star-easy 36,000 steps (the star recipe's, for
  every family), 5,000 test prompts; text d_model 384, 6 layers, 6 heads, blocks of 128, a
  4,096-token vocabulary, 20,000 steps, 256 blocks for gen-PPL and 256 x 4 for BrierLM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xlm_core.threads import apply_thread_policy

apply_thread_policy()  # what `xlm train` runs with: set before torch is imported

import _families_report as report  # noqa: E402
import _star  # noqa: E402
import torch  # noqa: E402
from _corpus import add_corpus_argument, corpus_task  # noqa: E402
from _results import finished_run, sets  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

import xlm_core  # noqa: E402
from xlm_core.config import resolve_run_config  # noqa: E402
from xlm_core.continuation import continues_prompts  # noqa: E402
from xlm_core.plugins import get_registry  # noqa: E402
from xlm_core.runner import train as run_training  # noqa: E402
from xlm_core.threads import CoreWatch  # noqa: E402

ROOT = _star.ROOT
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"
TASKS = ("star-easy", "text")
JUDGE = "arlm"  # the family whose nll_kind is exact: judges the text samples of its seed


@dataclass(frozen=True)
class Size:
    star_steps: int
    star_val_every: int  # validations per run: the points of the curves
    text_steps: int
    text_val_every: int
    star_limit: int  # test prompts decoded per sampler
    text_limit: int  # test blocks sampled for gen-PPL and entropy
    brier_limit: int  # test blocks cut for BrierLM
    brier_prefixes: int  # cuts per block
    val_predict_limit: int  # star validation prompts decoded at each validation
    vocab_size: int
    block_size: int
    d_model: int  # the text backbone; star-easy keeps the star presets'
    n_layers: int
    n_heads: int
    lr: float


# --quick is sized from step times measured on the shared 2-core box (load ~3): ~85 ms a star
# step and ~280 ms a text step across families, ~3 s per text validation (the whole validation
# split; MDLM and BDLM average 8 corruptions). About 9 min of star and 14 min of text training.
SIZES = {
    "smoke": Size(30, 10, 20, 10, 16, 4, 2, 1, 8, 2048, 64, 64, 4, 4, 2e-3),
    "quick": Size(400, 100, 160, 40, 300, 32, 16, 2, 32, 2048, 64, 64, 4, 4, 2e-3),
    "full": Size(36000, 1000, 20000, 1000, 5000, 256, 256, 4, 100, 4096, 128, 384, 6, 6, 1e-3),
}


class ValClock(Callback):
    """Training seconds at the end of each validation: Lightning's metrics.csv has no time column."""

    def __init__(self) -> None:
        self.start = 0.0
        self.ticks: list[dict[str, float]] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.ticks.append(
                {"step": trainer.global_step, "seconds": time.perf_counter() - self.start}
            )


def shown(command: list[str]) -> str:
    """A command as the JSON records it: paths inside the repository relative to its root, so the
    record reads the same on every machine (the commands are run from the root)."""
    return shlex.join(command).replace(f"{ROOT}/", "")


def train_plan(
    family: str, task: str, seed: int, args: argparse.Namespace
) -> tuple[str, list[str]]:
    """The preset and ``--set`` items of one run; the same for every family but the family's name.

    Star-easy keeps each family's ``star`` preset (its backbone, optimiser and decoding) and only
    evens out the steps (and switches off a preset's weight average). Text sets every shared backbone and optimiser field, overriding the
    ``tiny`` presets, which differ between families; family-specific fields (noise schedule,
    block size, stop head) keep the family's choice.
    """
    size: Size = args.size
    common = [f"training.seed={seed}", f"eval.seed={seed}"]
    if task == "star-easy":
        # a preset's weight average (ILM's) is tuned to its own schedule: over the shared budget,
        # --quick's 400 steps, an average of decay 0.999 would still weigh the initial weights
        star = get_registry().get(family).manifest.presets["star"].get("training", {})
        no_average = ["training.ema=null"] if star.get("ema") is not None else []
        return "star", [f"training.max_steps={size.star_steps}", f"training.val_every={size.star_val_every}",
                        f"eval.val_predict_limit={size.val_predict_limit}", *no_average, *common]  # fmt: skip
    fields = get_registry().get(family).manifest.config.model_fields
    backbone = {
        "d_model": size.d_model, "n_layers": size.n_layers, "n_heads": size.n_heads, "d_ff": "null",
        "dropout": 0.0, "tie_embeddings": "true", "learned_positions": 0, "token_shift": "false",
    }  # fmt: skip
    items = [f"model.{k}={v}" for k, v in backbone.items() if k in fields]
    items += [
        f"training.max_steps={size.text_steps}", f"training.val_every={size.text_val_every}",
        f"training.lr={size.lr}", "training.batch_size=64",
        f"training.warmup_steps={max(1, size.text_steps // 20)}", "training.weight_decay=0.01",
        f"task.vocab_size={size.vocab_size}", f"task.block_size={size.block_size}",
        f"task.cache_dir={args.work / 'cache'}", *args.corpus_sets, *common,
    ]  # fmt: skip
    items += [f"predictor.{k}={v}" for k, v in sample_settings(family).items()]
    return "tiny", items


def sample_settings(family: str) -> dict[str, Any]:
    """Text decoding: temperature 1 (gen-PPL and BrierLM score the model's distribution, not a
    greedy decoder) and the family's default sampler (a preset such as MDLM's ``tiny`` may pick
    another one for star-easy)."""
    fields = get_registry().get(family).manifest.predictor_settings.model_fields
    chosen: dict[str, Any] = {"temperature": 1.0}
    if "sampler" in fields:
        chosen["sampler"] = fields["sampler"].default
    return chosen


def sampler_grid(family: str, greedy: bool) -> list[tuple[str, dict[str, Any]]]:
    """(label, predictor overrides): one per value of the family's ``sampler`` setting."""
    fields = get_registry().get(family).manifest.predictor_settings.model_fields
    info = fields.get("sampler")
    choices = [c for c in typing.get_args(info.annotation) if isinstance(c, str)] if info else []
    if not choices:
        return [("greedy" if greedy else "sampling", {})]
    return [(choice, {"sampler": choice}) for choice in choices]


def stages(family: str) -> list[str | None]:
    """The values of the family's ``model.stage`` setting, in the order it declares them (plugin
    API 1.2, docs/plugins.md 2.8: CALM's autoencoder, then generator); ``[None]`` for a family
    that trains in one run."""
    info = get_registry().get(family).manifest.config.model_fields.get("stage")
    choices = [c for c in typing.get_args(info.annotation) if isinstance(c, str)] if info else []
    return choices or [None]


def train(family: str, task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train one run (or reuse it when finished): its command, seconds and validation clock.

    A family that trains in stages trains each for the same budget, each stage but the first
    ``--init-from`` the one before; the record sums their steps and seconds, and its validation
    clock is the last stage's, counted from the start of the first."""
    run_dir = args.work / task / f"{family}-seed{seed}"
    preset, items = train_plan(family, task, seed, args)
    parts, previous = [], None
    for stage in stages(family):
        last = stage == stages(family)[-1]
        stage_dir = run_dir if last else run_dir.with_name(f"{run_dir.name}-{stage}")
        extra = [] if stage is None else [f"model.stage={stage}"]
        # a stage trained anew makes every later one stale, whatever their commands say
        reuse = all(part["reused"] for part in parts)
        parts.append(
            train_stage(family, task, preset, [*items, *extra], stage_dir, previous, reuse)
        )
        previous = stage_dir / "final"
    offset = sum(part["train_seconds"] for part in parts[:-1])
    return {
        "family": family, "task": task, "seed": seed,
        "command": " && ".join(part["command"] for part in parts),
        "steps": sum(part["steps"] for part in parts),
        "train_seconds": sum(part["train_seconds"] for part in parts),
        "val_clock": [{**tick, "seconds": tick["seconds"] + offset} for tick in parts[-1]["val_clock"]],
        "parameters": parts[-1]["parameters"],
    }  # fmt: skip


def train_stage(
    family: str,
    task: str,
    preset: str,
    items: list[str],
    run_dir: Path,
    init_from: Path | None,
    reuse: bool = True,
) -> dict[str, Any]:
    """Train one run into ``run_dir`` (or, with ``reuse``, take it when finished with the same
    command and resolved config); ``reused`` in the record says which."""
    # beside the run, not in it: xlm refuses to overwrite a directory holding files it did not write
    record_file = run_dir.with_suffix(".train.json")
    start_from = [] if init_from is None else ["--init-from", str(init_from)]
    command = ["xlm", "train", "--plugin", family, "--preset", preset, "--task", task,
               *sets(items), *start_from, "--out", str(run_dir), "--overwrite"]  # fmt: skip
    config = resolve_run_config(family, preset=preset, task=task, sets=items)
    # the same command, and the same resolved config: a preset changed since is no reuse
    if reuse and record_file.is_file() and finished_run(run_dir, config):
        record = json.loads(record_file.read_text())
        if record["command"] == shown(command):
            return {**record, "reused": True}
    run_dir.with_suffix(".eval.json").unlink(missing_ok=True)  # it measured the run replaced here
    print("$ " + shown(command), file=sys.stderr, flush=True)
    clock = ValClock()
    result = run_training(config, run_dir=run_dir, overwrite=True, progress=False, evaluate=False,
                          callbacks=[clock], init_from=init_from)  # fmt: skip
    record = {
        "command": shown(command), "steps": result.steps, "train_seconds": result.seconds,
        "val_clock": clock.ticks,
        "parameters": sum(p.numel() for p in xlm_core.load(result.checkpoint, device="cpu").model.parameters()),
    }  # fmt: skip
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "reused": False}


def evaluate_star(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Decode the first ``star_limit`` test prompts under every sampler of the family."""
    checkpoint = args.work / "star-easy" / f"{run['family']}-seed{run['seed']}" / "final"
    pipeline = xlm_core.load(checkpoint, device=args.device)
    examples = list(pipeline.task.examples("test")[: args.size.star_limit])
    greedy = pipeline.run_config.predictor.temperature == 0
    grid = sampler_grid(run["family"], greedy)
    rows = _star.measure_grid(pipeline, examples, grid, run["seed"])
    for row in rows:
        row["settings"] = pipeline.settings(**row["settings"]).model_dump(mode="json")
    return {
        "rows": rows,
        "n_examples": len(examples),
        "batch_size": pipeline.run_config.eval.batch_size,
    }


def evaluate_text(run: dict[str, Any], judge: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``xlm eval --judge <ARLM of this seed> --metric default --metric brier``, in process."""
    checkpoint = args.work / "text" / f"{run['family']}-seed{run['seed']}" / "final"
    pipeline = xlm_core.load(checkpoint, device=args.device)
    size: Size = args.size
    figures = pipeline.evaluate("test", size.text_limit, judge=judge, progress=False)
    result = {"eval_command": shown([
        "xlm", "eval", "--checkpoint", str(checkpoint), "--judge", str(judge.checkpoint),
        "--limit", str(size.text_limit), "--json"])}  # fmt: skip
    if continues_prompts(pipeline.predictor):  # else BrierLM is refused for the family: left out
        brier = pipeline.brier("test", size.brier_limit, prefixes=size.brier_prefixes)
        figures.update(brier)
        result["brier_command"] = shown([
            "xlm", "eval", "--checkpoint", str(checkpoint), "--metric", "brier", "--limit",
            str(size.brier_limit), "--brier-prefixes", str(size.brier_prefixes), "--json"])  # fmt: skip
    return {**result, "figures": figures}


#: What the text table keeps of ``Pipeline.evaluate`` and ``Pipeline.brier``; the JSON keeps all.
TEXT_KEYS = ("nll", "nll_kind", "brier_1", "brier_lm", "gen_ppl", "entropy", "samples_per_s", "data_gen_ppl",
             "data_entropy")  # fmt: skip


def run_task(task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train and evaluate every family for every seed: one record per run (evaluation reused
    from ``--work`` when the run and its evaluation are finished)."""
    records = []
    for seed in args.seeds:
        # the judge first: every text model of this seed is scored by this seed's ARLM
        order = sorted(args.families, key=lambda f: f != JUDGE)
        judge = None
        for family in order:
            run = train(family, task, seed, args)
            eval_file = args.work / task / f"{family}-seed{seed}.eval.json"  # see train()
            if eval_file.is_file():
                measured = json.loads(eval_file.read_text())
            else:
                start = time.perf_counter()
                if task == "star-easy":
                    measured = evaluate_star(run, args)
                else:
                    if judge is None:
                        judge = xlm_core.load(
                            args.work / task / f"{JUDGE}-seed{seed}" / "final", device=args.device
                        )
                    measured = evaluate_text(run, judge, args)
                measured["eval_seconds"] = time.perf_counter() - start
                eval_file.write_text(json.dumps(measured, indent=2) + "\n")
            record = {**run, **measured}
            if task == "text":
                record.update({k: measured["figures"].get(k) for k in TEXT_KEYS})
            record["curve"] = report.read_val_curve(
                args.work / task / f"{family}-seed{seed}", run["val_clock"]
            )
            records.append(record)
            print(f"{task} {family} seed {seed}: trained {run['train_seconds']:.0f} s, "
                  f"evaluated {measured['eval_seconds']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    return records


class MachineShare:
    """How much of the machine other work took while the benchmark ran.

    The load average counts this benchmark's own threads, so it cannot say whether the machine
    was otherwise idle; the CPU time all processes spent (``/proc/stat``) minus this process's own
    can (``CoreWatch``, what xlm's thread policy measures too). ``machine_idle`` is the convention
    of the other benchmarks' JSON: others used under 5% of the cores' time.
    """

    def __init__(self) -> None:
        self.load_before = os.getloadavg()
        self.start = time.perf_counter()
        self.own = self._own_seconds()
        cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        try:
            self.watch: CoreWatch | None = CoreWatch(cpus) if cpus else None
        except (OSError, ValueError):
            self.watch = None  # not Linux: only the load averages are recorded

    @staticmethod
    def _own_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def summary(self) -> dict[str, Any]:
        wall, own = time.perf_counter() - self.start, self._own_seconds() - self.own
        busy_cores = None if self.watch is None else self.watch.others_busy()
        cores = len(self.watch.cpus) if self.watch is not None else os.cpu_count() or 1
        share = None if busy_cores is None else busy_cores / cores
        return {
            "cores": cores, "torch_threads": torch.get_num_threads(),
            "load_average_before": [round(x, 2) for x in self.load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_seconds_own": round(own, 1),
            "cpu_seconds_others": None if busy_cores is None else round(busy_cores * wall, 1),
            "others_share_of_cores": None if share is None else round(share, 3),
            "machine_idle": None if share is None else share < 0.05,
        }  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("Sizes (every family alike within a task):")[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="size",
                      help="the CPU size docs/benchmarks.md reports (default)")  # fmt: skip
    size.add_argument("--full", action="store_const", const="full", dest="size",
                      help="the GPU size (see below)")  # fmt: skip
    # a few steps into a temporary directory: for developing this script, never reported
    size.add_argument(
        "--smoke", action="store_const", const="smoke", dest="size", help=argparse.SUPPRESS
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--families", help="comma-separated (default: every installed family)")
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated: {', '.join(TASKS)}"
    )
    add_corpus_argument(parser, default="python-docs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where evaluation runs; training picks its accelerator as xlm train does")  # fmt: skip
    parser.add_argument(
        "--work", type=Path, help="runs, reused when finished (default: runs/bench-families-SIZE)"
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON (default: benchmarks/results/families[_full].json)"
    )
    parser.add_argument("--images", type=Path, help="where the PNGs go (default: docs/images)")
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables and redraw the plots from --out; train nothing")  # fmt: skip
    args = parser.parse_args()
    args.size_name = args.size or "quick"
    args.size = SIZES[args.size_name]
    installed = [f.name for f in get_registry().families()]
    args.families = args.families.split(",") if args.families else installed
    unknown = set(args.families) - set(installed)
    if unknown:
        parser.error(
            f"--families: not installed: {', '.join(sorted(unknown))} (installed: {', '.join(installed)})"
        )
    args.tasks = [t for t in args.tasks.split(",") if t]
    if set(args.tasks) - set(TASKS):
        parser.error(f"--tasks: choose from {', '.join(TASKS)}")
    if "text" in args.tasks and JUDGE not in args.families:
        parser.error(f"--families: the text table needs {JUDGE} (the judge of gen-PPL)")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    args.seeds = list(range(args.seeds))
    suffix = "" if args.size_name == "quick" else f"_{args.size_name}"
    if args.size_name == "smoke":  # never overwrite measured results with a smoke run
        scratch = Path(tempfile.mkdtemp(prefix="xlm-families-bench-"))
        args.work, args.out, args.images = (
            args.work or scratch / "work",
            args.out or scratch / "families.json",
            args.images or scratch,
        )
    args.work = (args.work or ROOT / "runs" / f"bench-families-{args.size_name}").resolve()
    args.out = args.out or RESULTS / f"families{suffix}.json"
    args.images = args.images or IMAGES
    args.plots = {"quality_nfe": args.images / f"families_star_quality_nfe{suffix}.png",
                  "val_curves": args.images / f"families_val_curves{suffix}.png"}  # fmt: skip
    args.corpus_sets = corpus_task(args.corpus) if "text" in args.tasks else []
    return args


def draw(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The plots and the printed tables of a result (measured now, or read back with --report-only)."""
    star, text, budget = result["star_easy"], result["text"], result["budget"]
    label = f"--{result['size']}, seeds {', '.join(map(str, result['seeds']))}"
    if star:
        title = f"star-easy, {budget['star_steps']} steps ({label})"
        report.plot_quality_nfe(star, args.plots["quality_nfe"], title)
    curves = {task: [{"family": r["family"], "seed": r["seed"], "points": r["curve"]} for r in runs]
              for task, runs in result["runs"].items()}  # fmt: skip
    title = f"validation vs training wall time ({label})"
    report.plot_val_curves(curves, args.plots["val_curves"], title)
    if star:
        print(
            f"\nstar-easy ({budget['star_steps']} steps, {budget['star_limit']} test prompts; {label})\n"
        )
        print(report.star_table(star))
    if text:
        print(f"\ntext: {result['corpus']} ({budget['text_steps']} steps; {label})\n")
        print(report.text_table(text))
    share = result["machine"]["others_share_of_cores"]
    print(f"\n{result['minutes']:.1f} min; other work took {share if share is not None else '?'} "
          f"of the cores; {args.out}")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.report_only:
        draw(json.loads(args.out.read_text()), args)
        return
    machine, start = MachineShare(), time.perf_counter()
    records = {task: run_task(task, args) for task in args.tasks}
    star = report.aggregate_star(records.get("star-easy", []))
    text = report.aggregate_text(records.get("text", []))
    minutes = (time.perf_counter() - start) / 60
    result = {
        "benchmark": "families",
        "command": shlex.join(["python", "benchmarks/families.py", *sys.argv[1:]]),
        "size": args.size_name, "budget": asdict(args.size), "seeds": args.seeds,
        "families": args.families, "tasks": args.tasks, "corpus": args.corpus if "text" in args.tasks else None,
        "minutes": minutes, "machine": machine.summary(), "device": args.device,
        "platform": platform.platform(), "torch": torch.__version__,
        "plots": {k: shown([str(v)]) for k, v in args.plots.items()},
        "star_easy": star, "text": text, "runs": records,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    draw(result, args)


if __name__ == "__main__":
    main()
