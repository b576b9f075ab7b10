"""Tiny BDLM components shared by the tests: the conformance kit's vocabulary and task shape."""

from __future__ import annotations

import pytest
import torch
from xlm_bdlm.config import BDLMConfig
from xlm_bdlm.model import BDLMModel

from xlm_core.testing import TINY_VOCAB, sharpen


def tiny_config(**overrides) -> BDLMConfig:
    return BDLMConfig(**{"d_model": 32, "n_layers": 2, "n_heads": 2, **overrides})


def sharp_model(config: BDLMConfig, seed: int = 0) -> BDLMModel:
    """An untrained model with weights at unit scale: sharp, input-dependent predictions, so that
    samples stop at varied lengths and any difference in what a position sees shows."""
    torch.manual_seed(seed)
    return sharpen(BDLMModel(config, TINY_VOCAB), scale=2.0)


@pytest.fixture
def make_config():
    """``make_config(**overrides)``: the tiny config with some fields changed."""
    return tiny_config


@pytest.fixture
def make_model():
    """``make_model(config, seed=0)``: a sharp untrained model in eval mode."""
    return sharp_model
