"""Feeding the device: DataLoader workers (``training.num_workers: auto``), pinned memory and copies
that do not wait, only where batches go to a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from xlm_core.components import Batch
from xlm_core.config import TrainingConfig, resolve_run_config
from xlm_core.data import datamodule
from xlm_core.data.datamodule import EvalBatch, XLMDataModule, loader_workers
from xlm_core.data.tasks import build_task
from xlm_core.plugins import get_registry


def test_num_workers_is_auto_by_default_and_takes_a_count():
    assert TrainingConfig().num_workers == "auto"
    assert TrainingConfig(num_workers=3).num_workers == 3
    assert TrainingConfig(num_workers="2").num_workers == 2  # as --set passes it
    for bad in (-1, "many"):
        with pytest.raises(ValidationError):
            TrainingConfig(num_workers=bad)


def test_auto_means_no_workers_on_a_cpu_and_a_few_on_a_gpu(monkeypatch):
    assert loader_workers("auto", on_gpu=False) == 0
    monkeypatch.setattr(datamodule, "usable_cores", lambda: 16)
    assert loader_workers("auto", on_gpu=True) == datamodule.GPU_WORKERS
    monkeypatch.setattr(datamodule, "usable_cores", lambda: 2)
    assert loader_workers("auto", on_gpu=True) == 1  # leave the training process a core
    assert loader_workers(3, on_gpu=False) == loader_workers(3, on_gpu=True) == 3


def _loaders(device: str) -> list:
    config = resolve_run_config("arlm", sets=["training.batch_size=4"])
    task = build_task(config.task)
    collator = get_registry().get("arlm").component("collator")(config.model, task.tokenizer.vocab, task.shape)
    data = XLMDataModule(task, collator, batch_size=4, eval_batch_size=4, seed=0, eval_seed=0, num_workers="auto")
    data.trainer = SimpleNamespace(
        world_size=1, global_rank=0, global_step=0, strategy=SimpleNamespace(root_device=torch.device(device))
    )
    return [data.train_dataloader(), *data.val_dataloader()]


def test_loaders_pin_memory_and_start_workers_only_for_a_gpu(monkeypatch):
    cpu = _loaders("cpu")
    assert all(not loader.pin_memory and loader.num_workers == 0 for loader in cpu)
    monkeypatch.setattr(datamodule, "usable_cores", lambda: 8)
    gpu = _loaders("cuda")  # the loaders are only built: no batch is drawn, no GPU is needed
    assert all(loader.pin_memory and loader.num_workers == datamodule.GPU_WORKERS for loader in gpu)


def _batch() -> Batch:
    ids = torch.arange(6).view(2, 3)
    return Batch(ids, ids > 0, ids, {"t": torch.ones(2)}, needs_mask=False, window=2)


def test_moving_a_batch_keeps_its_layout_facts():
    moved = _batch().to("cpu")
    assert moved.needs_mask is False and moved.window == 2
    assert torch.equal(moved.extras["t"], torch.ones(2))
    evaluation = EvalBatch([_batch()], counted=False).to(torch.device("cpu"))
    assert evaluation.parts[0].window == 2 and evaluation.counted is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_a_pinned_batch_copies_to_the_gpu_without_waiting():
    pinned = _batch().pin_memory()
    assert pinned.input_ids.is_pinned() and pinned.extras["t"].is_pinned()
    assert pinned.needs_mask is False and pinned.window == 2
    assert pinned.to("cuda").input_ids.is_cuda
