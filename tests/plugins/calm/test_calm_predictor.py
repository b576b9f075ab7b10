"""Decoding: cached and uncached agree, a row's sample does not depend on its batch, counts are right."""

from __future__ import annotations

import pytest
import torch
from xlm_calm.config import CALMSettings
from xlm_calm.predictor import CALMPredictor

from xlm_core.testing import TINY_SHAPE, TINY_VOCAB

PROMPTS = [[], [5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15]]
SEEDS = [11, 12, 13, 14]


def predict(model, config, prompts=PROMPTS, seeds=SEEDS, **settings):
    predictor = CALMPredictor(config, TINY_VOCAB, TINY_SHAPE)
    return predictor.predict(
        model, prompts, settings=CALMSettings(**settings), seeds=seeds, record_steps=True
    )


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_cached_and_uncached_decoding_agree(make_config, make_model, temperature, chunk_size):
    config = make_config(chunk_size=chunk_size)
    model = make_model(config)
    pool = {"temperature": temperature, "temperature_samples": 16}
    cached = predict(model, config, **pool)
    uncached = predict(model, config, kv_cache=False, **pool)
    assert cached.sequences() == uncached.sequences()
    assert torch.equal(cached.steps, uncached.steps) and torch.equal(cached.nfe, uncached.nfe)
    assert len({tuple(s) for s in cached.sequences()}) > 1  # rows differ: the test bites


@pytest.mark.parametrize("kv_cache", [True, False])
def test_a_row_samples_the_same_alone_and_in_batches_of_any_size(make_config, make_model, kv_cache):
    config = make_config()
    model = make_model(config)
    together = predict(
        model, config, kv_cache=kv_cache, temperature=0.5, temperature_samples=16
    ).sequences()
    doubled = predict(
        model,
        config,
        PROMPTS * 2,
        SEEDS * 2,
        kv_cache=kv_cache,
        temperature=0.5,
        temperature_samples=16,
    ).sequences()
    assert doubled == together * 2
    for row, prompt in enumerate(PROMPTS):
        alone = predict(
            model,
            config,
            [prompt],
            [SEEDS[row]],
            kv_cache=kv_cache,
            temperature=0.5,
            temperature_samples=16,
        ).sequences()
        assert alone == [together[row]]


def test_one_generator_pass_and_one_decoder_pass_per_chunk(make_config, make_model):
    config = make_config(chunk_size=2)
    pred = predict(make_model(config), config)
    assert torch.equal(pred.nfe, pred.steps)
    assert torch.equal(pred.counters["decoder_passes"], pred.steps)
    for row, states in enumerate(pred.history):
        # the text grows by a whole chunk per step, up to where it ends
        assert [len(s) for s in states[:-1]] == [2 * (i + 1) for i in range(len(states) - 1)]
        assert states[-1] == pred.sequences()[row]
    assert (
        int(pred.steps.max())
        <= CALMPredictor(config, TINY_VOCAB, TINY_SHAPE).step_budget(None)
        == 4
    )


def test_a_stage_one_model_samples_chunks_from_the_prior(make_config, make_model):
    config = make_config(stage="autoencoder")
    model = make_model(config)
    assert model.generator is None
    first, again = predict(model, config), predict(model, config)
    assert first.sequences() == again.sequences()
    assert torch.equal(first.nfe, first.counters["decoder_passes"])


def test_settings_refuse_what_calm_cannot_do():
    with pytest.raises(ValueError, match="top_k filters a distribution over single tokens"):
        CALMSettings(top_k=5)
    with pytest.raises(ValueError, match="less than or equal to 1"):
        CALMSettings(temperature=1.5)
