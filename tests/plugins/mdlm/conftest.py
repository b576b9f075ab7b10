"""Tiny MDLM components shared by the tests: a 20-token vocabulary, prompts of up to 4 tokens, targets of up to 5."""

from __future__ import annotations

import pytest
import torch
from xlm_mdlm.collator import MDLMCollator
from xlm_mdlm.config import MDLMConfig
from xlm_mdlm.loss import MDLMLoss
from xlm_mdlm.model import MDLMModel
from xlm_mdlm.predictor import MDLMPredictor

from xlm_core.components import DataShape, Example, Vocab

VOCAB = Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
SHAPE = DataShape(prompt_length=4, target_length=5)


def tiny_config(**overrides) -> MDLMConfig:
    return MDLMConfig(**{"d_model": 32, "n_layers": 2, "n_heads": 4, **overrides})


def tiny_model(config: MDLMConfig | None = None, seed: int = 0) -> MDLMModel:
    torch.manual_seed(seed)
    return MDLMModel(config or tiny_config(), VOCAB).eval()


@pytest.fixture
def make_config():
    """``make_config(**overrides)``: the tiny config with some fields changed."""
    return tiny_config


@pytest.fixture
def make_model():
    """``make_model(config=None, seed=0)``: an untrained tiny model in eval mode."""
    return tiny_model


@pytest.fixture
def vocab() -> Vocab:
    return VOCAB


@pytest.fixture
def shape() -> DataShape:
    return SHAPE


@pytest.fixture
def config() -> MDLMConfig:
    return tiny_config()


@pytest.fixture
def model(config) -> MDLMModel:
    return tiny_model(config)


@pytest.fixture
def collator(config) -> MDLMCollator:
    return MDLMCollator(config, VOCAB, SHAPE)


@pytest.fixture
def loss(config) -> MDLMLoss:
    return MDLMLoss(config, VOCAB)


@pytest.fixture
def predictor(config) -> MDLMPredictor:
    return MDLMPredictor(config, VOCAB, SHAPE)


@pytest.fixture
def examples() -> list[Example]:
    """Prompts of different lengths (one empty) and targets of different lengths (one full)."""
    return [
        Example((5, 6, 7), (8, 9, 10)),
        Example((5, 6, 7, 8), (11,)),
        Example((), (5, 6, 7, 8, 9)),
        Example((12,), (13, 14)),
    ]
