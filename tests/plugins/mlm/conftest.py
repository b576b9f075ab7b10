"""Shared pieces of the MLM tests: a tiny vocabulary, task shape, config and untrained model."""

from __future__ import annotations

import pytest
import torch
from xlm_mlm.config import MLMConfig
from xlm_mlm.model import MLMModel

from xlm_core.components import DataShape, Vocab


@pytest.fixture(scope="session")
def vocab() -> Vocab:
    return Vocab(size=16, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)


@pytest.fixture(scope="session")
def shape() -> DataShape:
    return DataShape(prompt_length=5, target_length=6)


@pytest.fixture(scope="session")
def config() -> MLMConfig:
    return MLMConfig(d_model=32, n_layers=2, n_heads=2)


@pytest.fixture(scope="session")
def model(config, vocab) -> MLMModel:
    torch.manual_seed(0)
    return MLMModel(config, vocab).eval()


@pytest.fixture(scope="session")
def prompts() -> list[tuple[int, ...]]:
    return [(5, 6, 7), (8,), (9, 10, 11, 12, 13), ()]


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors this small gain nothing from threads, and on a busy machine the thread pool's
    hand-offs slow these tests many times over; the previous setting comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
