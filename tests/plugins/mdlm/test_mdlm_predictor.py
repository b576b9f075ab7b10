"""Samplers: no MASK in outputs, budgets, p(x0) reuse, batch-size invariance, decoding order and blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from xlm_mdlm.config import MDLMSettings
from xlm_mdlm.model import subs_log_probs
from xlm_mdlm.predictor import MDLMPredictor

from xlm_core.components import ModelOutput

PROMPTS = [(5, 6, 7), (8,), (), (9, 10, 11, 12), (13, 14), (15,), (16, 17, 18), (19, 5)]
SEEDS = list(range(100, 108))

SAMPLERS = {
    "ancestral": {},
    "ancestral-uncached": {"cache": False},
    "ancestral-2L-steps": {"steps": 12},
    "ancestral-1-step": {"steps": 1},
    "ancestral-blocks": {"block_size": 2},
    "confidence": {"sampler": "confidence"},
    "confidence-k2-margin": {"sampler": "confidence", "k": 2, "confidence": "margin"},
    "threshold": {"sampler": "threshold", "threshold": 0.2},
    "threshold-entropy-blocks": {
        "sampler": "threshold",
        "confidence": "neg_entropy",
        "threshold": -2.5,
        "block_size": 4,
    },
    "greedy-top-k-top-p": {"temperature": 0.0, "top_k": 3, "top_p": 0.9},
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_finishes_within_budget_without_masks(name, model, predictor, vocab):
    settings = MDLMSettings(**SAMPLERS[name])
    pred = predictor.predict(model, PROMPTS, settings=settings, seeds=SEEDS, record_steps=True)
    assert not (pred.ids == vocab.mask_id).any()
    for row in pred.sequences():
        assert not set(row) & set(vocab.special_ids)
    budget = predictor.step_budget(settings)
    assert (pred.steps >= 1).all() and (pred.steps <= budget).all()
    assert (pred.nfe >= 1).all() and (pred.nfe <= pred.steps).all()
    for b, states in enumerate(pred.history):
        assert len(states) == int(pred.steps[b])
        assert states[-1] == pred.sequences()[b]  # the last state is the output
        for before, after in zip(
            states[:-1], states[1:], strict=True
        ):  # a decided token is never revised
            assert all(x == y for x, y in zip(before, after, strict=True) if x != vocab.mask_id)


def test_one_ancestral_step_fills_every_mask(model, predictor):
    pred = predictor.predict(model, PROMPTS, settings=MDLMSettings(steps=1), seeds=SEEDS)
    assert pred.steps.tolist() == [1] * len(PROMPTS) and pred.nfe.tolist() == [1] * len(PROMPTS)


def test_cache_gives_identical_samples_with_fewer_forward_passes(model, predictor):
    runs = {
        cache: predictor.predict(
            model, PROMPTS, settings=MDLMSettings(steps=24, cache=cache), seeds=SEEDS
        )
        for cache in (True, False)
    }
    assert torch.equal(runs[True].ids, runs[False].ids)
    assert torch.equal(runs[True].steps, runs[False].steps)
    assert torch.equal(runs[False].nfe, runs[False].steps)  # uncached: one pass per step
    assert runs[True].nfe.sum() < runs[False].nfe.sum()
    assert (runs[True].nfe < runs[True].steps).all()  # skipped per row, not per batch


def test_time_conditioned_models_never_reuse(make_config, make_model, vocab, shape):
    config = make_config(time_conditioning=True)
    model, predictor = make_model(config), MDLMPredictor(config, vocab, shape)
    pred = predictor.predict(model, PROMPTS, settings=MDLMSettings(steps=12), seeds=SEEDS)
    assert torch.equal(pred.nfe, pred.steps)


@pytest.mark.parametrize(
    "name", ["ancestral", "ancestral-blocks", "confidence-k2-margin", "threshold-entropy-blocks"]
)
def test_samples_do_not_depend_on_the_batch(name, model, predictor):
    settings = MDLMSettings(**SAMPLERS[name])
    together = predictor.predict(model, PROMPTS, settings=settings, seeds=SEEDS)
    for i, (prompt, seed) in enumerate(zip(PROMPTS, SEEDS, strict=True)):
        alone = predictor.predict(model, [prompt], settings=settings, seeds=[seed])
        assert alone.sequences()[0] == together.sequences()[i], f"row {i}"
        assert int(alone.steps[0]) == int(together.steps[i])
        assert int(alone.nfe[0]) == int(together.nfe[i])


def test_seeds_matter(model, predictor):
    a = predictor.predict(model, [()] * 8, settings=MDLMSettings(), seeds=SEEDS)
    assert len({tuple(s) for s in a.sequences()}) > 1


class RankedModel(nn.Module):
    """Window position j always predicts token 5 + j, more confidently the further right it is;
    it never predicts EOS or PAD, so every output is the full target length."""

    def __init__(self, vocab, width: int):
        super().__init__()
        self.mask_id = vocab.mask_id
        table = torch.zeros(width, vocab.size)
        table[torch.arange(width), 5 + torch.arange(width)] = 1.0 + torch.arange(width).float()
        self.register_buffer("table", table)
        self.unused = nn.Parameter(torch.zeros(1))  # gives the predictor a device

    def forward(self, input_ids, attention_mask=None, t=None, *, window=None):
        tokens = input_ids[:, -window:]
        logits = self.table.expand(len(tokens), -1, -1).clone()
        return ModelOutput(subs_log_probs(logits, tokens, self.mask_id))


def _decision_order(pred, row=0):
    """For each step, the positions of the output decided in that step."""
    states, mask = pred.history[row], 1
    previous = [mask] * len(states[0])
    order = []
    for state in states:
        order.append(
            [
                j
                for j, (a, b) in enumerate(zip(previous, state, strict=True))
                if a == mask and b != mask
            ]
        )
        previous = state
    return order


@pytest.fixture
def ranked(vocab, shape):
    return RankedModel(vocab, shape.target_length + 1)


def test_confidence_decodes_the_most_confident_position_first(ranked, predictor, shape):
    settings = MDLMSettings(sampler="confidence", temperature=0.0)
    pred = predictor.predict(ranked, [(5,)], settings=settings, seeds=[0], record_steps=True)
    assert pred.sequences()[0] == [5 + j for j in range(shape.target_length)]
    # right to left; the window's last (EOS) position is never decided
    assert _decision_order(pred) == [[4], [3], [2], [1], [0]]
    assert int(pred.steps[0]) == predictor.step_budget(settings) == shape.target_length


def test_confidence_k_decides_k_positions_per_step(ranked, predictor):
    settings = MDLMSettings(sampler="confidence", k=2, temperature=0.0)
    pred = predictor.predict(ranked, [(5,)], settings=settings, seeds=[0], record_steps=True)
    assert _decision_order(pred) == [[3, 4], [1, 2], [0]]


def test_threshold_decides_every_position_above_it(ranked, predictor, vocab, shape):
    width = shape.target_length + 1
    top = ranked(torch.full((1, width), vocab.mask_id), window=width).logits.exp().max(-1).values[0]
    tau = float(top[2] + top[3]) / 2  # positions 3.. are above, 0..2 below
    settings = MDLMSettings(sampler="threshold", threshold=tau, temperature=0.0)
    pred = predictor.predict(ranked, [(5,)], settings=settings, seeds=[0], record_steps=True)
    # the model is not time-conditioned: confidences do not change, so one position per later step
    assert _decision_order(pred) == [[3, 4], [2], [1], [0]]


def test_blocks_go_left_to_right(ranked, predictor):
    settings = MDLMSettings(sampler="confidence", block_size=2, temperature=0.0)
    pred = predictor.predict(ranked, [(5,)], settings=settings, seeds=[0], record_steps=True)
    assert _decision_order(pred) == [[1], [0], [3], [2], [4]]


def test_ancestral_blocks_never_decide_ahead(model, predictor, vocab):
    settings = MDLMSettings(block_size=2)
    pred = predictor.predict(model, PROMPTS, settings=settings, seeds=SEEDS, record_steps=True)
    for states in pred.history:
        for state in states:
            decided = [tok != vocab.mask_id for tok in state]
            # a position of block b+1 is decided only once block b is complete
            for j in range(2, len(decided)):
                if decided[j]:
                    assert all(decided[: (j // 2) * 2])


def test_length_budget(model, predictor):
    settings = MDLMSettings(max_new_tokens=2)
    pred = predictor.predict(model, PROMPTS, settings=settings, seeds=SEEDS)
    assert (pred.lengths <= 2).all() and predictor.window_length(settings) == 3


@pytest.mark.parametrize("schedule", ["log-linear", "cosine"])
def test_ancestral_steps_unmask_at_the_schedule_rate(schedule, ranked, make_config, vocab, shape):
    config = make_config(schedule=schedule)
    predictor = MDLMPredictor(config, vocab, shape)
    settings = MDLMSettings(steps=4, temperature=0.0)  # RankedModel then never ends early
    n = 400
    pred = predictor.predict(
        ranked, [(5,)] * n, settings=settings, seeds=range(n), record_steps=True
    )
    t, s = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.75], dtype=torch.float64)
    expected = float(predictor.schedule.unmask_probability(t, s))
    first = torch.tensor([states[0] for states in pred.history])
    observed = float((first != vocab.mask_id).double().mean())
    assert abs(observed - expected) < 4 * (expected * (1 - expected) / first.numel()) ** 0.5
