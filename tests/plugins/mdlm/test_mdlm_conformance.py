"""The conformance kit every family passes, with the default settings and with each other sampler."""

from __future__ import annotations

import pytest

from xlm_core.testing import CHECK_NAMES, run_check


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance(check):
    run_check("mdlm", check)


@pytest.mark.parametrize(
    "settings",
    [
        {"sampler": "confidence", "k": 2},
        {"sampler": "threshold", "threshold": 0.5, "block_size": 3},
        {"sampler": "ancestral", "steps": 4, "cache": False},
        {"sampler": "threshold", "threshold": 0.5, "order": "left_to_right"},
    ],
    ids=["confidence", "threshold-blocks", "ancestral-uncached", "threshold-left-to-right"],
)
@pytest.mark.parametrize("check", ["predictor_terminates", "determinism"])
def test_conformance_of_other_samplers(check, settings):
    run_check("mdlm", check, settings_overrides=settings)


@pytest.mark.parametrize("check", ["model_shapes", "loss_finite_and_grads", "predictor_terminates"])
def test_conformance_with_time_conditioning(check):
    # the time estimator: a time-conditioned model must see the t it is trained at
    overrides = {"time_conditioning": True, "schedule": "cosine", "nelbo_estimator": "time"}
    run_check("mdlm", check, config_overrides=overrides)
