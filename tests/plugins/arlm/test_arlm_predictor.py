"""ARLM decoding: cache equivalence, early exit of finished rows, seeding, budgets and history."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from xlm_arlm.config import ARLMConfig, ARLMSettings
from xlm_arlm.model import ARLMModel
from xlm_arlm.predictor import ARLMPredictor

from xlm_core.components import DataShape, Vocab

VOCAB = Vocab(size=12, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
SHAPE = DataShape(prompt_length=6, target_length=10)
CONFIG = ARLMConfig(d_model=32, n_layers=2, n_heads=4, tie_embeddings=False)
PROMPTS = [
    [],
    [9, 8, 8],
    [5, 10, 5, 8, 9, 11],
    [10, 7, 10, 11, 8],
    [6, 8, 7, 9],
    [7, 10],
    [],
    [7, 11, 7, 10, 9],
]
SEEDS = list(range(100, 108))

SETTINGS = {
    "greedy": {"temperature": 0.0},
    "temperature": {"temperature": 1.3},
    "top_k": {"temperature": 0.9, "top_k": 3},
    "top_p": {"temperature": 1.0, "top_p": 0.8},
}


@pytest.fixture(scope="module")
def model() -> ARLMModel:
    """An untrained model made to emit EOS at varied lengths, also under greedy decoding.

    Large random weights give sharp, context-dependent distributions (a default
    init mostly repeats one token), and EOS's output row is token 7's scaled up,
    so EOS wins wherever 7 would, by a clear margin rather than a float tie.
    """
    torch.manual_seed(0)
    m = ARLMModel(CONFIG, VOCAB).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
        head = m.backbone.head.weight
        head[VOCAB.eos_id] = 1.1 * head[7]
    return m


def _predict(model, prompts=PROMPTS, seeds=SEEDS, record_steps=False, **settings):
    predictor = ARLMPredictor(CONFIG, VOCAB, SHAPE)
    return predictor.predict(
        model, prompts, settings=ARLMSettings(**settings), seeds=seeds, record_steps=record_steps
    )


def _spy(model) -> list[tuple[int, int]]:
    """Record the input shape of every forward pass the predictor makes."""
    calls: list[tuple[int, int]] = []
    inner = model.next_token_logits

    def spy(input_ids, *args, **kwargs):
        calls.append(tuple(input_ids.shape))
        return inner(input_ids, *args, **kwargs)

    model.next_token_logits = spy
    return calls


@pytest.mark.parametrize("name", list(SETTINGS))
def test_cached_and_uncached_decoding_give_identical_tokens(model, name):
    cached = _predict(model, **SETTINGS[name])
    uncached = _predict(model, use_cache=False, **SETTINGS[name])
    assert torch.equal(cached.ids, uncached.ids)
    assert torch.equal(cached.lengths, uncached.lengths)
    assert torch.equal(cached.nfe, uncached.nfe)
    # the comparison means something only if rows stop at different times
    assert len(set(cached.lengths.tolist())) >= 3, cached.lengths


@pytest.mark.parametrize("use_cache", [True, False])
def test_finished_rows_leave_the_batch(model, use_cache):
    calls = _spy(model)
    try:
        out = _predict(model, use_cache=use_cache, temperature=0.0)
    finally:
        del model.next_token_logits  # back to the class method
    prefix = 1 + max(len(p) for p in PROMPTS)
    assert len(calls) == int(out.steps.max())
    for t, (rows, length) in enumerate(calls):
        assert rows == int((out.steps > t).sum()), f"step {t}: {rows} rows decoded"
        if use_cache:
            assert length == (prefix if t == 0 else 1)  # the prefix once, then one token per step
        else:
            assert length == prefix + t
    assert out.nfe.tolist() == out.steps.tolist()
    assert sum(rows for rows, _ in calls) == int(out.nfe.sum()) < len(PROMPTS) * SHAPE.target_length


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_sample_does_not_depend_on_its_batch(model, use_cache):
    settings = {"temperature": 1.0, "top_k": 6, "use_cache": use_cache}
    together = _predict(model, **settings).sequences()
    for i in range(len(PROMPTS)):
        alone = _predict(
            model, prompts=PROMPTS[i : i + 1], seeds=SEEDS[i : i + 1], **settings
        ).sequences()
        assert alone[0] == together[i], f"row {i}"


def test_seeds_control_samples(model):
    first = _predict(model, temperature=1.0).sequences()
    assert _predict(model, temperature=1.0).sequences() == first
    assert _predict(model, temperature=1.0, seeds=[s + 1 for s in SEEDS]).sequences() != first


def test_outputs_respect_budgets_and_never_contain_special_tokens(model):
    predictor = ARLMPredictor(CONFIG, VOCAB, SHAPE)
    assert predictor.step_budget(ARLMSettings()) == SHAPE.target_length
    assert predictor.step_budget(ARLMSettings(max_new_tokens=4)) == 4

    out = _predict(model, temperature=1.0, max_new_tokens=4)
    assert out.steps.max() <= 4 and out.lengths.max() <= 4
    for row, n in zip(out.ids, out.lengths.tolist(), strict=True):
        assert not set(row[:n].tolist()) & set(VOCAB.special_ids)
        assert (row[n:] == VOCAB.pad_id).all()

    full = _predict(model, temperature=1.0, min_new_tokens=6, max_new_tokens=6)
    assert full.lengths.tolist() == [6] * len(PROMPTS) and full.steps.tolist() == [6] * len(PROMPTS)
    at_least = _predict(model, temperature=0.0, min_new_tokens=3)
    assert at_least.lengths.min() >= 3 and _predict(model, temperature=0.0).lengths.min() < 3
    with pytest.raises(ValidationError):
        ARLMSettings(min_new_tokens=5, max_new_tokens=3)


def test_history_shows_the_target_growing(model):
    out = _predict(model, temperature=1.0, record_steps=True)
    for b, final in enumerate(out.sequences()):
        history = out.history[b]
        assert len(history) == int(out.steps[b])
        assert history[-1] == final
        for before, after in zip([[]] + history, history, strict=False):
            assert after[: len(before)] == before and len(after) - len(before) <= 1


def test_unconditional_and_edge_cases(model):
    out = _predict(model, prompts=[[], []], seeds=[1, 2], temperature=1.0)
    assert out.ids.shape[0] == 2 and out.steps.min() >= 1
    empty = _predict(model, prompts=[], seeds=[])
    assert empty.ids.shape == (0, 0)
    with pytest.raises(ValueError, match="one seed per prompt"):
        _predict(model, prompts=[[5]], seeds=[1, 2])


@pytest.mark.parametrize("name", ["greedy", "top_p"])
def test_kv_cache_off_gives_the_tokens_of_the_cache(model, name):
    # the setting's shared name (use_cache above is its old spelling, kept for one release)
    cached = _predict(model, kv_cache=True, **SETTINGS[name])
    uncached = _predict(model, kv_cache=False, **SETTINGS[name])
    assert torch.equal(cached.ids, uncached.ids) and torch.equal(cached.nfe, uncached.nfe)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_finished_rows_leave_in_groups_without_changing_any_sample(model, monkeypatch, kv_cache):
    """Compacting the batch (and copying the cache) when a quarter of its rows has finished gives
    what compacting at every finished row gave, and what never compacting gives, with fewer copies."""
    from xlm_core.nn import kv_cache as cache_module

    copies: list[int] = []
    select = cache_module.KVCache.select
    monkeypatch.setattr(
        cache_module.KVCache, "select", lambda self, rows: (copies.append(len(rows)), select(self, rows))[1]
    )
    results = {}
    for share in (0.0, cache_module.COMPACT_SHARE, 2.0):  # every row, in groups, never
        monkeypatch.setattr(cache_module, "COMPACT_SHARE", share)
        copies.clear()
        out = _predict(model, temperature=1.0, record_steps=True, kv_cache=kv_cache)
        results[share] = (out.sequences(), out.steps.tolist(), out.history, len(copies))
    every, grouped, never = results.values()
    assert every[:3] == grouped[:3] == never[:3]
    assert len(set(every[1])) > 2  # rows did finish at different steps
    if kv_cache:
        assert never[3] == 0 and 0 < grouped[3] < every[3]


def test_worth_compacting_waits_for_a_quarter_of_the_rows():
    from xlm_core.nn.kv_cache import worth_compacting

    assert not worth_compacting(0, 64)
    assert not worth_compacting(15, 64) and worth_compacting(16, 64)
    assert worth_compacting(1, 1) and worth_compacting(1, 4) and not worth_compacting(1, 5)
