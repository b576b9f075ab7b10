"""Block decoding: the cache changes nothing but the cost, rows stop after their EOS block, nfe is honest."""

from __future__ import annotations

import math

import pytest
import torch
from xlm_bdlm.config import BDLMConfig, BDLMSettings
from xlm_bdlm.predictor import BDLMPredictor

from xlm_core.testing import TINY_SHAPE, TINY_VOCAB

PROMPTS = [[], [5, 6], [7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20], [5], [], [9, 9, 9]]
SEEDS = list(range(100, 100 + len(PROMPTS)))
SAMPLERS = {
    "ancestral": {},
    "ancestral-more-steps": {"steps": 6},
    "confidence-k2-margin": {"sampler": "confidence", "k": 2, "confidence": "margin"},
    "threshold": {"sampler": "threshold", "threshold": 0.3},
    "threshold-left-to-right": {"sampler": "threshold", "threshold": 0.1, "order": "left_to_right"},
    "greedy-top-k": {"sampler": "confidence", "temperature": 0.0, "top_k": 3},
}
LAYOUTS = {
    "B1-shift": {"block_size": 1},
    "B3-shift-padded": {"block_size": 3},
    "B4-no-shift": {"block_size": 4, "shift": False},
    "B4-positions": {"block_size": 4, "nelbo_estimator": "time", "position_masking": 1.5},
}


def _predict(model, config, prompts=PROMPTS, seeds=SEEDS, record_steps=False, **settings):
    predictor = BDLMPredictor(config, TINY_VOCAB, TINY_SHAPE)
    return predictor.predict(
        model, prompts, settings=BDLMSettings(**settings), seeds=seeds, record_steps=record_steps
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_cached_and_uncached_decoding_give_identical_samples(layout, sampler, make_config, make_model):
    config = make_config(learned_positions=32, **LAYOUTS[layout])
    model = make_model(config)
    cached = _predict(model, config, **SAMPLERS[sampler])
    uncached = _predict(model, config, kv_cache=False, **SAMPLERS[sampler])
    assert torch.equal(cached.ids, uncached.ids) and torch.equal(cached.steps, uncached.steps)
    assert len(set(cached.lengths.tolist())) > 1  # rows stop at different lengths


@pytest.mark.parametrize("shift", [True, False])
def test_the_appending_pass_reads_the_next_block_as_a_pass_of_its_own(shift, make_config, make_model):
    model = make_model(make_config(block_size=4, shift=shift))
    prefix = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])  # a left-padded prompt: the mask matters
    real = prefix != 0
    block = torch.full((2, 4), TINY_VOCAB.mask_id)
    with torch.no_grad():
        together = model.new_cache(2, 12, "cpu")
        before, ready = model.context_logits(prefix, real, together, read_next=True)
        alone = model.new_cache(2, 12, "cpu")
        before_alone, _ = model.context_logits(prefix, real, alone)
        expected = model.block_logits(block, alone, before_alone)
    assert together.length == alone.length == 4  # the next block stayed out of the cache
    torch.testing.assert_close(ready, expected)
    if shift:
        torch.testing.assert_close(before, before_alone)


def _blocks_generated(pred, block: int, budget: int) -> list[int]:
    """Blocks each row generated: up to the one holding its EOS (or all, at a full budget)."""
    return [math.ceil(min(n + 1, budget) / block) for n in pred.lengths.tolist()]


@pytest.mark.parametrize("block", [1, 2, 4])
def test_nfe_counts_every_pass_and_appending_reads_the_next_block(block, make_config, make_model):
    config = make_config(block_size=block)
    model = make_model(config)
    settings = {"sampler": "confidence", "reuse_logits": False}
    cached = _predict(model, config, **settings)
    uncached = _predict(model, config, kv_cache=False, **settings)
    blocks = _blocks_generated(cached, block, TINY_SHAPE.target_length)
    if block == 1:  # no pass per step: the shifted prediction comes with the block appended before
        # the prefill, and each finished block appended once, except the row's last
        assert cached.nfe.tolist() == blocks
    else:  # a pass per step: a block's first step is read by the pass that appended the one before
        assert torch.equal(cached.nfe, cached.steps)
    assert torch.equal(uncached.nfe, uncached.steps)  # recomputing: one pass per step, nothing else


@pytest.mark.parametrize("sampler", ["confidence", "threshold"])
def test_reading_order_decides_every_token_after_its_left_context(sampler, make_config, make_model):
    config = make_config(block_size=4)
    model = make_model(config)
    settings = {"sampler": sampler, "order": "left_to_right", "threshold": 0.99, "k": 2}
    pred = _predict(model, config, record_steps=True, **settings)
    for states in pred.history:
        for state in states:  # the decided positions are always a prefix of the window
            first_mask = state.index(TINY_VOCAB.mask_id) if TINY_VOCAB.mask_id in state else len(state)
            assert all(tok == TINY_VOCAB.mask_id for tok in state[first_mask:])
    by_confidence = _predict(model, config, record_steps=True, **{**settings, "order": "confidence"})
    assert by_confidence.history != pred.history  # the order is not the confidence order here


def test_a_row_stops_after_the_block_with_its_eos(make_config, make_model):
    config = make_config(block_size=2)
    model = make_model(config)
    pred = _predict(model, config, record_steps=True, sampler="confidence")
    for b, states in enumerate(pred.history):
        n = int(pred.lengths[b])
        last = states[-1]
        # positions after the EOS block were never decided: still MASK in the last state
        generated = _blocks_generated(pred, 2, TINY_SHAPE.target_length)[b] * 2
        assert all(tok == TINY_VOCAB.mask_id for tok in last[generated:])
        assert last[:n] == pred.sequences()[b]


@pytest.mark.parametrize("budget", [1, 3, 5])
def test_a_length_budget_that_is_not_a_whole_number_of_blocks(budget, make_config, make_model):
    config = make_config(block_size=4)
    model = make_model(config)
    predictor = BDLMPredictor(config, TINY_VOCAB, TINY_SHAPE)
    for sampler in ("ancestral", "confidence", "threshold"):
        settings = BDLMSettings(sampler=sampler, max_new_tokens=budget)
        pred = predictor.predict(model, PROMPTS, settings=settings, seeds=SEEDS)
        assert (pred.lengths <= budget).all() and (pred.steps <= predictor.step_budget(settings)).all()
        assert not (pred.ids == TINY_VOCAB.mask_id).any()


def test_step_budgets():
    predictor = BDLMPredictor(BDLMConfig(block_size=3), TINY_VOCAB, TINY_SHAPE)
    # T = 8 in blocks of 3: 3 + 3 + 2 decided positions
    assert predictor.step_budget({"sampler": "ancestral"}) == 9
    assert predictor.step_budget({"sampler": "ancestral", "steps": 5}) == 15
    assert predictor.step_budget({"sampler": "confidence", "k": 2}) == 2 + 2 + 1
    assert predictor.step_budget({"sampler": "threshold"}) == 8


def test_no_prompts_and_seeds_that_matter(make_config, make_model):
    config = make_config()
    model = make_model(config)
    empty = _predict(model, config, prompts=[], seeds=[])
    assert empty.ids.shape[0] == 0 and empty.lengths.shape == (0,)
    many = _predict(model, config, prompts=[[]] * 6, seeds=list(range(6)))
    assert len({tuple(s) for s in many.sequences()}) > 1
