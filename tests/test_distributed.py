"""Several processes: CPU DDP over gloo through the CLI, and FSDP's pieces without a GPU.

Lightning's launcher starts the other processes by re-running the command, so the
multi-process runs go through a script in a subprocess (``python -c`` cannot be
re-run). The one-process references train in-process. Lightning's FSDP strategy
refuses a CPU, so FSDP is exercised with torch's own FSDP over gloo.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import xlm_core
import xlm_core.callbacks
from xlm_core.checkpoint import FINAL_DIR
from xlm_core.config import resolve_run_config
from xlm_core.runner import train

TINY = [
    "training.precision=32",  # exact comparisons across batch shapes: bf16 rounding differs
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "training.warmup_steps=1",
    "training.accelerator=cpu",
    "eval.limit=2",
]

# Runs `xlm ARGS`; with BATCH_LOG set, every process also writes the training batches it
# collates, one JSON line [start step, example indices] per batch, to BATCH_LOG/<rank>.jsonl.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from xlm_core.cli.main import run
    from xlm_core.data import datamodule

    collate = datamodule.TrainCollate.__call__

    def recording(self, items):
        if os.environ.get("BATCH_LOG"):
            with open(os.path.join(os.environ["BATCH_LOG"], f"{self.rank}.jsonl"), "a") as log:
                log.write(json.dumps([self.start, [i for i, _ in items]]) + "\\n")
        return collate(self, items)

    datamodule.TrainCollate.__call__ = recording
    run(sys.argv[1:])
    """
)


@pytest.fixture(scope="module")
def xlm(tmp_path_factory):
    script = tmp_path_factory.mktemp("script") / "xlm_run.py"
    script.write_text(SCRIPT)

    def invoke(*args: str, batch_log: Path | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XLM_")}
        if batch_log is not None:
            batch_log.mkdir()
            env["BATCH_LOG"] = str(batch_log)
        command = [sys.executable, str(script), *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    return invoke


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _ddp(processes: int) -> list[str]:
    return ["--devices", str(processes), "--strategy", "ddp"]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    (path,) = (run_dir / "logs").glob("version_0/metrics.csv")
    return list(csv.DictReader(path.open()))


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


# -- DDP ----------------------------------------------------------------------------------------


def test_two_processes_train_like_one_at_the_same_global_batch(tmp_path, xlm):
    # ARLM's collator draws nothing and star-easy's targets are equally long, so the same global
    # batch gives the same gradient: the runs may differ only by float rounding.
    steps = ["training.max_steps=4", "training.val_every=4", "eval.val_predict_limit=4"]
    one, two = tmp_path / "one", tmp_path / "two"
    config = resolve_run_config("arlm", sets=[*TINY, *steps, "training.batch_size=16"])
    train(config, run_dir=one, progress=False, evaluate=False)
    done = xlm(
        "train", "--plugin", "arlm", "--out", str(two), *_ddp(2),
        *_sets([*TINY, *steps, "training.batch_size=8"]),
    )  # fmt: skip

    assert done.stderr.count("global batch: 16 examples per step (8 per device × 2 device(s)") == 1
    first, second = _metrics(one), _metrics(two)
    # train/loss is every process's mean, not the first process's own batch
    assert len(_column(second, "train/loss")) == 4
    assert _column(second, "train/loss") == pytest.approx(_column(first, "train/loss"), rel=1e-5)
    for key in ("val/loss", "val/nll", "val/token_acc", "val/nfe"):
        assert _column(second, key) == pytest.approx(_column(first, key), rel=1e-5), key
    a, b = (load_file(run / FINAL_DIR / "model.safetensors") for run in (one, two))
    # Adam moves a coordinate by lr·m/(sqrt(v) + eps): where a gradient is nearly zero, rounding that
    # differs between one process and two (1e-7 elsewhere) moves a weight by ~1e-5 (seen: one in 4096)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert "test (2 examples)" in done.stdout  # evaluated once, by the main process


@pytest.fixture(scope="module")
def mdlm_runs(tmp_path_factory, xlm):
    """MDLM trained on 1, 2 and 3 processes (same global batch, a different eval batch size each).

    The learning rate is negligible, so every run validates the same weights: what could
    still differ is how the split is divided and how examples are corrupted.
    """
    root = tmp_path_factory.mktemp("mdlm")
    common = [*TINY, "training.lr=1e-9", "training.max_steps=2", "training.val_every=2"]
    common.append("eval.val_predict_limit=5")
    config = resolve_run_config(
        "mdlm", sets=[*common, "training.batch_size=12", "eval.batch_size=7"]
    )
    train(config, run_dir=root / "1", progress=False, evaluate=False)
    for processes, size in ((2, 5), (3, 4)):
        sizes = [f"training.batch_size={12 // processes}", f"eval.batch_size={size}"]
        xlm(
            "train", "--plugin", "mdlm", "--out", str(root / str(processes)), *_ddp(processes),
            *_sets([*common, *sizes]),
            batch_log=root / f"batches-{processes}",
        )  # fmt: skip
    return root


def test_validation_figures_do_not_depend_on_processes_or_eval_batch_size(mdlm_runs):
    # 3 processes share the 100 validation examples 34/33/33: a padding sampler would count two
    # twice; MDLM seeded per batch would corrupt each example differently in each run.
    figures = {n: _metrics(mdlm_runs / str(n)) for n in (1, 2, 3)}
    for key in ("val/loss", "val/nll", "val/seq_acc", "val/token_acc", "val/nfe"):
        reference = _column(figures[1], key)
        assert len(reference) == 1, key
        for n in (2, 3):
            assert _column(figures[n], key) == pytest.approx(reference, rel=1e-5), (key, n)


def test_a_resumed_run_on_two_processes_draws_new_batches(tmp_path, mdlm_runs, xlm):
    run_dir = tmp_path / "run"
    shutil.copytree(mdlm_runs / "2", run_dir)
    xlm(
        "train", "--resume", str(run_dir), "--max-steps", "4",
        batch_log=tmp_path / "resumed",
    )  # fmt: skip

    def batches(log: Path, rank: int) -> list[list[int]]:
        lines = (log / f"{rank}.jsonl").read_text().splitlines()
        return [indices for _, indices in map(json.loads, lines)]

    first, resumed = mdlm_runs / "batches-2", tmp_path / "resumed"
    for rank in (0, 1):
        before, after = batches(first, rank), batches(resumed, rank)
        assert len(before) == len(after) == 2 and all(len(b) == 6 for b in before + after)
        # replaying would start again from the first run's first batch
        assert not set(map(tuple, after)) & set(map(tuple, before)), rank
    # the processes divide each global batch between them
    for step in range(2):
        assert not set(batches(first, 0)[step]) & set(batches(first, 1)[step])
    starts = {json.loads(line)[0] for line in (resumed / "0.jsonl").read_text().splitlines()}
    assert starts == {2}


# -- FSDP ---------------------------------------------------------------------------------------

# One FSDP process: wrap an XLMModule as Lightning's FSDP strategy does (use_orig_params), then
# let it build its optimiser; print which parameters are decayed.
FSDP_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from xlm_core.config import resolve_run_config
    from xlm_core.data.tasks import build_task
    from xlm_core.nn.block import Block
    from xlm_core.plugins import get_registry
    from xlm_core.training import XLMModule, no_decay_names, param_groups

    rank, store = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    config = resolve_run_config("arlm", sets=["model.d_model=32", "model.n_layers=2"])
    task = build_task(config.task)
    family = get_registry().get("arlm")
    module = XLMModule(config, family, task.tokenizer.vocab, task.shape, task.kind)
    matrices = sorted(n for n, p in module.model.named_parameters() if n not in module.no_decay)
    # a block wrapped on its own puts FSDP's prefix into the names, as an auto-wrap policy does
    FullyShardedDataParallel(
        module, use_orig_params=True, device_id=torch.device("cpu"),
        auto_wrap_policy=ModuleWrapPolicy({Block}),
    )
    prefix = "_fsdp_wrapped_module."
    names = {id(p): n.replace(prefix, "") for n, p in module.model.named_parameters()}
    decay, rest = module.configure_optimizers()["optimizer"].param_groups
    print(json.dumps({
        "matrices": matrices,
        "decayed": sorted(names[id(p)] for p in decay["params"]),
        "not_decayed": len(rest["params"]),
        "flat": all(p.ndim == 1 for p in module.model.parameters()),
        "decayed_by_shape": len(param_groups(module.model, 0.1)[0]["params"]),
    }))
    dist.destroy_process_group()
    """
)


def test_fsdp_keeps_weight_decay_on_the_matrices(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLM_")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", FSDP_WORKER, str(rank), str(tmp_path / "store")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["flat"]  # every parameter is a 1-D shard: its shape says nothing any more
        assert result["decayed_by_shape"] == 0  # what deciding after wrapping did
        assert result["decayed"] == result["matrices"] and len(result["matrices"]) == 8
        assert result["not_decayed"] == 6  # embedding and norms


def test_the_end_of_run_evaluation_uses_the_gathered_model(tmp_path, monkeypatch):
    # Under FSDP, after training the module's model holds this process's 1-D shards; only what
    # gathered_model returns is whole. Fake exactly that on one CPU process.
    gather, left = xlm_core.callbacks.gathered_model, []

    def sharded(trainer, pl_module):
        whole = copy.deepcopy(gather(trainer, pl_module))
        with torch.no_grad():
            for p in pl_module.model.parameters():
                p.data = p.data.flatten()[: (p.numel() + 1) // 2].clone()
        left.append(pl_module.model)
        return whole

    monkeypatch.setattr(xlm_core.callbacks, "gathered_model", sharded)
    sets = [*TINY, "training.batch_size=8", "training.max_steps=2", "eval.val_predict_limit=2"]
    config = resolve_run_config("arlm", sets=sets)
    result = train(config, run_dir=tmp_path / "run", progress=False, num_samples=1)

    assert all(p.ndim == 1 for p in left[-1].parameters())  # evaluating it would have failed
    reloaded = xlm_core.load(result.checkpoint, device="cpu").evaluate("test", 2, progress=False)
    assert result.metrics["nll"] == pytest.approx(reloaded["nll"], rel=1e-6)
    assert result.metrics["seq_acc"] == reloaded["seq_acc"]
