"""The conformance kit, in both stages, with the other samplers and chunk sizes."""

from __future__ import annotations

import pytest

from xlm_core.testing import CHECK_NAMES, run_check

GENERATOR = {"stage": "generator", "latent_size": 8, "energy_samples": 2, "target_samples": 4}


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance_of_the_autoencoder_stage(check):
    run_check("calm", check)


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance_of_the_generator_stage(check):
    run_check("calm", check, config_overrides=GENERATOR)


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.5, "temperature_samples": 16},
        {"temperature": 0.0, "temperature_samples": 8},
        {"temperature": 0.4, "temperature_samples": 8, "kv_cache": False},
    ],
    ids=["half", "zero", "fractional-uncached"],
)
@pytest.mark.parametrize("check", ["predictor_terminates", "determinism", "batch_invariance"])
def test_conformance_of_the_temperature_sampler(check, settings):
    run_check("calm", check, config_overrides=GENERATOR, settings_overrides=settings)


@pytest.mark.parametrize("chunk_size", [1, 3, 16], ids=["token", "padded-last-chunk", "one-chunk"])
@pytest.mark.parametrize(
    "check",
    [
        "collator",
        "model_shapes",
        "loss_finite_and_grads",
        "predictor_terminates",
        "batch_invariance",
    ],
)
def test_conformance_of_other_chunk_sizes(check, chunk_size):
    run_check("calm", check, config_overrides={**GENERATOR, "chunk_size": chunk_size})
