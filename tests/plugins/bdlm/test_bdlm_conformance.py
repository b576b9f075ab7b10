"""The conformance kit every family passes, with the default settings and with the other samplers and layouts."""

from __future__ import annotations

import pytest

from xlm_core.testing import CHECK_NAMES, run_check


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance(check):
    run_check("bdlm", check)


@pytest.mark.parametrize(
    "settings",
    [
        {"sampler": "confidence", "k": 2},
        {"sampler": "threshold", "threshold": 0.5},
        {"sampler": "ancestral", "steps": 3, "kv_cache": False},
    ],
    ids=["confidence", "threshold", "ancestral-uncached"],
)
@pytest.mark.parametrize("check", ["predictor_terminates", "determinism", "batch_invariance"])
def test_conformance_of_other_samplers(check, settings):
    run_check("bdlm", check, settings_overrides=settings)


@pytest.mark.parametrize(
    "config",
    [
        {"block_size": 1},
        {"block_size": 3},  # does not divide the window of 9: the last block is padded
        {"block_size": 9, "shift": False},
        {"nelbo_estimator": "time", "position_masking": 1.0, "clip_min": 0.3, "clip_max": 0.8},
    ],
    ids=["ar", "padded-last-block", "one-block-mdlm", "time-positions-clipped"],
)
@pytest.mark.parametrize(
    "check", ["collator", "model_shapes", "loss_finite_and_grads", "predictor_terminates", "batch_invariance"]
)
def test_conformance_of_other_layouts(check, config):
    run_check("bdlm", check, config_overrides=config)
