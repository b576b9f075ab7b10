"""Insertion decoding: stopping, leaving the batch, length budget, parallel insertion, sampling modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from xlm_ilm.config import ILMConfig, ILMSettings
from xlm_ilm.model import ILMModel
from xlm_ilm.predictor import ILMPredictor

from xlm_core.components import DataShape, ModelOutput, Vocab

VOCAB = Vocab(size=12, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
SHAPE = DataShape(prompt_length=4, target_length=6)
CONFIG = ILMConfig(d_model=32, n_layers=2, n_heads=4)


class ScriptedModel(nn.Module):
    """Insertion logits from a fixed table indexed by gap slot (0 = BOS); the stop head fires once
    the target has ``prompt[0] - 10`` tokens. Records the batch size of every forward pass."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.float())
        self.batch_sizes: list[int] = []

    def forward(self, input_ids, attention_mask=None):
        self.batch_sizes.append(input_ids.shape[0])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        bos = (input_ids == VOCAB.bos_id).long().argmax(dim=1, keepdim=True)
        slot = (torch.arange(input_ids.shape[1]) - bos).clamp(0, len(self.table) - 1)
        target_length = attention_mask.sum(dim=1) - bos.squeeze(1) - 1
        wanted = input_ids[:, 1] - 10
        stop_logits = torch.where(target_length >= wanted, 5.0, -5.0)
        return ModelOutput(self.table[slot], {"stop_logits": stop_logits})


def _scripted(n_slots: int = 8, seed: int = 0) -> ScriptedModel:
    torch.manual_seed(seed)
    return ScriptedModel(torch.randn(n_slots, VOCAB.size))


def _predict(model, prompts, seeds=None, **settings):
    seeds = list(range(len(prompts))) if seeds is None else seeds
    return ILMPredictor(CONFIG, VOCAB, SHAPE).predict(
        model, prompts, settings=ILMSettings(**settings), seeds=seeds, record_steps=True
    )


def test_a_row_stops_when_the_head_fires_leaves_the_batch_and_never_grows_again():
    model = _scripted()
    pred = _predict(model, [[12], [10], [15], [11]])  # rows want 2, 0, 5 and 1 tokens

    assert pred.lengths.tolist() == [2, 0, 5, 1]
    assert pred.nfe.tolist() == [3, 1, 6, 2]  # one insertion per step, plus the step that stops
    assert torch.equal(pred.steps, pred.nfe)
    assert model.batch_sizes == [4, 3, 2, 1, 1, 1]  # finished rows cost nothing
    for row, history in enumerate(pred.history):
        sizes = [len(h) for h in history]
        n = int(pred.lengths[row])
        # grows by one per step, then the stop step adds nothing
        assert sizes == [*range(1, n + 1), n]
        assert history[-1] == pred.sequences()[row]
    assert not any(t in VOCAB.special_ids for seq in pred.sequences() for t in seq)


def test_a_row_that_never_stops_ends_at_max_length_without_an_extra_pass():
    model = _scripted()
    pred = _predict(model, [[19], [19, 5]], max_length=4)
    assert pred.lengths.tolist() == [4, 4]
    assert pred.nfe.tolist() == [4, 4]
    assert pred.ids.shape == (2, 4)
    budget = ILMPredictor(CONFIG, VOCAB, SHAPE).step_budget(ILMSettings(max_length=4))
    assert budget == 5 and (pred.steps <= budget).all()
    # max_new_tokens is the same budget under the shared name; the task's length is the default
    assert _predict(model, [[19]], max_new_tokens=3).lengths.tolist() == [3]
    assert _predict(model, [[19]]).lengths.tolist() == [SHAPE.target_length]


def test_a_high_stop_threshold_postpones_stopping():
    model = _scripted()
    assert _predict(model, [[12]], stop_threshold=0.999).lengths.tolist() == [SHAPE.target_length]


def test_parallel_insertion_fills_every_gap_when_the_threshold_admits_everything():
    model = _scripted()
    pred = _predict(model, [[19]], max_length=8, parallel_k=8, parallel_threshold=0.0)
    # n tokens have n + 1 gaps, so every step takes n to 2n + 1
    assert [len(h) for h in pred.history[0]] == [1, 3, 7, 8]
    assert pred.nfe.tolist() == [4]
    capped = _predict(model, [[19]], max_length=8, parallel_k=3, parallel_threshold=0.0)
    assert [len(h) for h in capped.history[0]] == [1, 3, 6, 8]  # at most 3 per step, never past 8


def test_parallel_insertion_with_an_unreachable_threshold_is_single_insertion():
    model = _scripted()
    prompts, seeds = [[19], [19, 6], [16]], [5, 6, 7]
    single = _predict(model, prompts, seeds)
    guarded = _predict(model, prompts, seeds, parallel_k=4, parallel_threshold=1.0)
    assert torch.equal(single.ids, guarded.ids) and torch.equal(single.nfe, guarded.nfe)


def test_special_tokens_and_eos_are_never_inserted_even_when_the_model_prefers_them():
    table = torch.zeros(8, VOCAB.size)
    table[:, list(VOCAB.special_ids)] = 10.0
    pred = _predict(ScriptedModel(table), [[19], [19]], seeds=[0, 1])
    assert pred.lengths.tolist() == [SHAPE.target_length] * 2
    assert not any(t in VOCAB.special_ids for seq in pred.sequences() for t in seq)


def test_greedy_joint_decoding_takes_the_most_likely_gap_and_token():
    table = torch.full((3, VOCAB.size), -5.0)
    table[0, 7] = 3.0  # after BOS, 7 is the clear favourite
    table[1, 9] = 4.0  # after the first token, 9 beats anything at the front
    table[2, 6] = 1.0
    pred = _predict(ScriptedModel(table), [[12]], temperature=0.0)
    assert pred.sequences() == [[7, 9]]
    two_stage = _predict(ScriptedModel(table), [[12]], temperature=0.0, sampling="two_stage")
    assert two_stage.sequences() == [[7, 9]]


@pytest.mark.parametrize("sampling", ["joint", "two_stage"])
def test_both_sampling_modes_draw_from_the_joint_distribution(sampling):
    # Two insertions into an empty target: the first token goes after BOS (the only gap); the
    # second is a (gap, token) draw over two gaps, so the final pair reveals which gap it took.
    table = torch.full((2, VOCAB.size), -30.0)
    table[0, 5], table[0, 6] = 1.0, 0.0  # after BOS
    table[1, 7] = 0.5  # after the first token
    n = 3000
    pred = _predict(ScriptedModel(table), [[12]] * n, seeds=list(range(n)), max_length=2)
    counts: dict[tuple[int, ...], int] = {}
    for seq in pred.sequences():
        counts[tuple(seq)] = counts.get(tuple(seq), 0) + 1

    # exact: first token a ~ softmax(1, 0) over {5, 6}; then b in the BOS gap (b, a) or 7 after a (a, 7)
    first = torch.tensor([1.0, 0.0]).softmax(0)
    second = torch.tensor([1.0, 0.0, 0.5]).softmax(0)  # (5 in front, 6 in front, 7 behind)
    exact: dict[tuple[int, ...], float] = {}
    for a, pa in zip((5, 6), first.tolist(), strict=True):
        for seq, p in (((5, a), second[0]), ((6, a), second[1]), ((a, 7), second[2])):
            exact[seq] = exact.get(seq, 0.0) + pa * float(p)
    assert set(counts) <= set(exact)
    for seq, p in exact.items():
        assert abs(counts.get(seq, 0) / n - p) < 0.03, (seq, counts.get(seq, 0) / n, p)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"sampling": "two_stage", "top_p": 0.9, "temperature": 0.8},
        {"top_k": 4, "parallel_k": 2, "parallel_threshold": 0.02},
    ],
)
def test_samples_do_not_depend_on_the_rest_of_the_batch(settings):
    torch.manual_seed(0)
    model = ILMModel(CONFIG, VOCAB).eval()
    prompts, seeds = [[5, 6, 7], [], [8], [9, 10, 11, 5]], [3, 1, 4, 1]
    settings = {"stop_threshold": 0.9, **settings}
    together = _predict(model, prompts, seeds, **settings)
    for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        alone = _predict(model, [prompt], [seed], **settings)
        assert alone.sequences()[0] == together.sequences()[i]
        assert alone.nfe[0] == together.nfe[i]


def test_max_new_tokens_bounds_a_row_that_never_stops():
    # the shared name of the length budget (max_length above is its old spelling)
    model = _scripted()
    pred = _predict(model, [[19], [19, 5]], max_new_tokens=4)
    assert pred.lengths.tolist() == [4, 4] and pred.nfe.tolist() == [4, 4]
    assert ILMPredictor(CONFIG, VOCAB, SHAPE).step_budget(ILMSettings(max_new_tokens=4)) == 5
    joint = _predict(model, [[19]], seeds=[3], max_new_tokens=4, sampler="joint")
    assert joint.sequences() == _predict(model, [[19]], seeds=[3], max_new_tokens=4).sequences()
