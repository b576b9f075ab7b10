"""Tiny CALM components shared by the tests: the conformance kit's vocabulary and task shape."""

from __future__ import annotations

import pytest
import torch
from xlm_calm.config import CALMConfig
from xlm_calm.model import CALMModel

from xlm_core.testing import TINY_VOCAB, sharpen


def tiny_config(**overrides) -> CALMConfig:
    fields = {"d_model": 32, "n_layers": 2, "n_heads": 2, "latent_size": 8, "stage": "generator"}
    return CALMConfig(**{**fields, "energy_samples": 2, "target_samples": 4, **overrides})


def sharp_model(config: CALMConfig, seed: int = 0) -> CALMModel:
    """An untrained model with weights at unit scale: the head's noise matters and chunks vary, so
    samples stop at varied lengths and any difference in what a step sees shows."""
    torch.manual_seed(seed)
    return sharpen(CALMModel(config, TINY_VOCAB), scale=2.0)


@pytest.fixture
def make_config():
    """``make_config(**overrides)``: the tiny stage-2 config with some fields changed."""
    return tiny_config


@pytest.fixture
def make_model():
    """``make_model(config, seed=0)``: a sharp untrained model in eval mode."""
    return sharp_model
