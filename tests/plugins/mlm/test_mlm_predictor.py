"""MLM decoding: complete outputs, mask-predict's schedule and revision, reuse of logits, invariances."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from xlm_mlm.config import MLMConfig, MLMSettings
from xlm_mlm.predictor import MLMPredictor

from xlm_core.components import DataShape, ModelOutput, Vocab

STRATEGIES = [
    {"strategy": "mask_predict", "iterations": 4},
    {"strategy": "mask_predict", "iterations": 20},
    {"strategy": "confidence", "k": 1, "confidence": "top_prob"},
    {"strategy": "confidence", "k": 3, "confidence": "margin"},
    {"strategy": "threshold", "threshold": 0.5},
    {"strategy": "threshold", "threshold": -1.0, "confidence": "neg_entropy"},
]
SAMPLING = [
    {"temperature": 0.0},
    {"temperature": 1.0},
    {"temperature": 0.8, "top_k": 4, "top_p": 0.9},
]


def decode(model, vocab, shape, prompts, seeds=None, record_steps=False, **settings):
    predictor = MLMPredictor(MLMConfig(), vocab, shape)
    seeds = list(range(len(prompts))) if seeds is None else seeds
    return predictor.predict(
        model, prompts, settings=MLMSettings(**settings), seeds=seeds, record_steps=record_steps
    )


@pytest.mark.parametrize(("strategy", "sampling"), list(itertools.product(STRATEGIES, SAMPLING)))
def test_outputs_are_complete_and_within_budget(model, vocab, shape, prompts, strategy, sampling):
    settings = {**strategy, **sampling}
    pred = decode(model, vocab, shape, prompts, record_steps=True, **settings)
    budget = MLMPredictor(MLMConfig(), vocab, shape).step_budget(MLMSettings(**settings))
    assert pred.ids.shape == (len(prompts), shape.target_length)
    assert not (pred.ids == vocab.mask_id).any(), "no MASK is left in any output"
    for row, n in enumerate(pred.lengths.tolist()):
        assert not set(pred.ids[row, :n].tolist()) & set(vocab.special_ids), "only content before the end"
        assert (pred.ids[row, n:] == vocab.pad_id).all()
        assert pred.history[row][-1] == pred.ids[row, :n].tolist()
        assert len(pred.history[row]) == pred.steps[row]
    assert ((pred.steps >= 1) & (pred.steps <= budget)).all()
    assert ((pred.nfe >= 1) & (pred.nfe <= pred.steps)).all()


def test_max_new_tokens_sets_the_window(model, vocab, shape, prompts):
    pred = decode(model, vocab, shape, prompts, strategy="confidence", max_new_tokens=2)
    assert pred.ids.shape == (len(prompts), 2) and (pred.lengths <= 2).all()


def test_one_iteration_of_mask_predict_is_one_shot_argmax(model, vocab, shape, prompts):
    pred = decode(
        model, vocab, shape, prompts, strategy="mask_predict", iterations=1, temperature=0.0
    )
    window = shape.target_length + 1
    for row, prompt in enumerate(prompts):
        pad = [vocab.pad_id] * (shape.prompt_length - len(prompt))
        ids = torch.tensor([pad + list(prompt) + [vocab.mask_id] * window])
        mask = (ids != vocab.pad_id) | (torch.arange(ids.shape[1]) >= shape.prompt_length)
        argmax = model(ids, mask).logits[0, -window:].argmax(-1).tolist()
        ends = [i for i, t in enumerate(argmax) if t in (vocab.eos_id, vocab.pad_id)]
        expected = argmax[: min([*ends, window - 1])]
        assert pred.sequences()[row] == expected
    assert pred.nfe.tolist() == [1] * len(prompts) and pred.steps.tolist() == [1] * len(prompts)


A, B, C = 5, 6, 7  # content tokens of the revision model


class Reviser(nn.Module):
    """A hand-written model over a 4-position window (3 tokens + EOS) and no prompt.

    Position 0 guesses A fairly confidently (0.6) while position 1 is masked, and C
    almost surely (0.99) once position 1 is decided. Positions 1-3 (B, B, EOS) are
    unsure (0.4) while position 0 is masked, then sure (0.95, 0.9, 0.85). Mask-predict
    with T = 4 keeps A after iteration 1, re-masks it after iteration 2 (its old 0.6
    is now the least confident) and writes C at iteration 3: a revision.
    """

    def __init__(self, vocab: Vocab):
        super().__init__()
        self.vocab = vocab
        self.unused = nn.Parameter(torch.zeros(()))  # gives the predictor a device to read

    def forward(self, input_ids, attention_mask=None):
        mask_id = self.vocab.mask_id
        window = input_ids[:, -4:]
        probs = torch.zeros(*window.shape, self.vocab.size)
        for row, ids in enumerate(window.tolist()):
            first_masked, second_masked = ids[0] == mask_id, ids[1] == mask_id
            guesses = [(A, 0.6) if second_masked else (C, 0.99)]
            sure = [0.95, 0.9, 0.85]
            guesses += [
                (t, 0.4 if first_masked else p)
                for t, p in zip((B, B, self.vocab.eos_id), sure, strict=True)
            ]
            for pos, (token, p) in enumerate(guesses):
                others = [t for t in range(self.vocab.size) if t not in (token, mask_id)]
                probs[row, pos, others] = (1 - p) / len(others)
                probs[row, pos, token] = p
        return ModelOutput(logits=probs.log())


def test_mask_predict_revises_a_low_confidence_token(vocab):
    shape = DataShape(prompt_length=0, target_length=3)
    reviser = Reviser(vocab)
    pred = decode(
        reviser, vocab, shape, [()], record_steps=True, strategy="mask_predict", iterations=4
    )
    m = vocab.mask_id
    assert pred.history[0] == [[A, m, m], [m, B, B], [C, B, B], [C, B, B]]
    assert pred.sequences() == [[C, B, B]]
    # without revision the early guess stays
    pred = decode(reviser, vocab, shape, [()], strategy="confidence", k=1)
    assert pred.sequences() == [[A, B, B]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_samples_do_not_depend_on_the_batch(model, vocab, shape, prompts, strategy):
    settings = {**strategy, "temperature": 1.0, "top_k": 6}
    seeds = [11, 12, 13, 14]
    batched = decode(model, vocab, shape, prompts, seeds=seeds, **settings)
    for row, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        alone = decode(model, vocab, shape, [prompt], seeds=[seed], **settings)
        assert alone.sequences()[0] == batched.sequences()[row]
        assert alone.nfe[0] == batched.nfe[row] and alone.steps[0] == batched.steps[row]


class PositionalGuess(nn.Module):
    """Logits that ignore the window: every iteration re-masks the same positions, so inputs repeat."""

    def __init__(self, vocab: Vocab, window: int):
        super().__init__()
        self.window = window
        self.table = nn.Parameter(
            torch.randn(window, vocab.size, generator=torch.Generator().manual_seed(0))
        )
        self.forwarded = 0

    def forward(self, input_ids, attention_mask=None):
        self.forwarded += input_ids.shape[0]
        logits = torch.zeros(*input_ids.shape, self.table.shape[1])
        logits[:, -self.window :] = self.table
        return ModelOutput(logits=logits)


def test_rows_whose_input_did_not_change_reuse_their_logits(model, vocab, shape, prompts):
    # T = 3 L: each mask count repeats three times; with input-independent logits the
    # same tokens are re-masked, so the second and third iteration of each count reuse logits
    window = shape.target_length + 1
    guess = PositionalGuess(vocab, window)
    settings = {"strategy": "mask_predict", "iterations": 3 * window}
    reused = decode(guess, vocab, shape, prompts, reuse_logits=True, **settings)
    rows_forwarded = guess.forwarded
    fresh = decode(guess, vocab, shape, prompts, reuse_logits=False, **settings)
    assert torch.equal(reused.ids, fresh.ids)
    # the count reaches 0 at iteration 3L - 2: the last two iterations would predict nothing
    assert fresh.nfe.tolist() == [3 * window - 2] * len(prompts)
    assert (reused.nfe < fresh.nfe).all()
    assert rows_forwarded == reused.nfe.sum(), "nfe counts the rows the model really saw"

    # on a real model, reuse never changes a token, whatever the strategy
    for strategy in STRATEGIES:
        a = decode(model, vocab, shape, prompts, reuse_logits=True, temperature=1.0, **strategy)
        b = decode(model, vocab, shape, prompts, reuse_logits=False, temperature=1.0, **strategy)
        assert torch.equal(a.ids, b.ids) and (a.nfe <= b.nfe).all()


class MaskCounter(nn.Module):
    """Wraps a model and records how many MASK each row it runs on holds."""

    def __init__(self, inner: nn.Module, mask_id: int):
        super().__init__()
        self.inner, self.mask_id, self.masks_seen = inner, mask_id, []

    def forward(self, input_ids, attention_mask=None):
        self.masks_seen += (input_ids == self.mask_id).sum(dim=1).tolist()
        return self.inner(input_ids, attention_mask)


@pytest.mark.parametrize("extra", [1, 5])
def test_mask_predict_stops_once_nothing_is_masked(model, vocab, shape, prompts, extra):
    # T = L + 1, as the default 10 iterations on star-easy's 9-position window
    window = shape.target_length + 1
    counter = MaskCounter(model, vocab.mask_id)
    settings = {"strategy": "mask_predict", "iterations": window + extra, "reuse_logits": False}
    pred = decode(counter, vocab, shape, prompts, record_steps=True, **settings)
    assert 0 not in counter.masks_seen, "no forward pass on a window with nothing to predict"
    budget = MLMPredictor(MLMConfig(), vocab, shape).step_budget(MLMSettings(**settings))
    assert pred.nfe.tolist() == pred.steps.tolist() == [budget] * len(prompts)
    assert budget < window + extra
    assert all(len(states) == budget for states in pred.history)


def test_threshold_extremes_match_the_other_strategies(model, vocab, shape, prompts):
    # the scale's top, which no probability exceeds: one position per step, the most confident, as
    # confidence k=1 (above it is refused)
    slow = decode(model, vocab, shape, prompts, strategy="threshold", threshold=1.0)
    one_by_one = decode(model, vocab, shape, prompts, strategy="confidence", k=1)
    assert torch.equal(slow.ids, one_by_one.ids) and torch.equal(slow.nfe, one_by_one.nfe)
    # below every probability: all positions at once, as one-shot argmax
    fast = decode(model, vocab, shape, prompts, strategy="threshold", threshold=-1.0)
    one_shot = decode(model, vocab, shape, prompts, strategy="mask_predict", iterations=1)
    assert torch.equal(fast.ids, one_shot.ids) and fast.nfe.tolist() == [1] * len(prompts)


def test_confidence_stops_once_the_output_is_decided(vocab):
    # the Reviser decides position 0 first, then EOS is not first: k = 4 fills all in one step
    shape = DataShape(prompt_length=0, target_length=3)
    pred = decode(Reviser(vocab), vocab, shape, [()], strategy="confidence", k=4)
    assert pred.steps.tolist() == [1] and pred.nfe.tolist() == [1]


SAMPLERS = [
    {"sampler": "mask_predict", "steps": 4},
    {"sampler": "confidence", "k": 3, "confidence": "margin"},
    {"sampler": "threshold", "threshold": 0.5},
]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_shared_setting_names_decode_as_the_old_ones(model, vocab, shape, prompts, sampler):
    # sampler / steps are the shared names of strategy / iterations, used above
    old = {{"sampler": "strategy", "steps": "iterations"}.get(k, k): v for k, v in sampler.items()}
    settings = {"temperature": 1.0, "reuse_logits": False}
    new_pred = decode(model, vocab, shape, prompts, record_steps=True, **sampler, **settings)
    with pytest.warns(FutureWarning, match="is renamed"):
        old_pred = decode(model, vocab, shape, prompts, record_steps=True, **old, **settings)
    assert new_pred.sequences() == old_pred.sequences() and new_pred.history == old_pred.history
    budget = MLMPredictor(MLMConfig(), vocab, shape).step_budget(sampler)
    assert (new_pred.steps <= budget).all()
