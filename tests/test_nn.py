"""The shared backbone and sampling utilities every family relies on."""

from __future__ import annotations

import math

import pytest
import torch

from xlm_core.nn import sampling
from xlm_core.nn.transformer import Transformer


def _causal(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(40, d_model=32, n_layers=2, n_heads=4, causal=True, **kw).eval()


@pytest.mark.parametrize("learned_positions", [0, 16])
def test_kv_cache_matches_full_pass_with_left_padding(learned_positions):
    model = _causal(learned_positions=learned_positions)
    ids = torch.randint(5, 40, (3, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :3] = False  # row 1 is left-padded
    ids[1, :3] = 0
    full = model.logits(model(ids, mask))

    cache = model.new_cache(3, 16, "cpu")
    chunks = [model.logits(model(ids[:, :5], mask[:, :5], cache=cache))]
    for i in range(5, 9):
        chunks.append(model.logits(model(ids[:, i : i + 1], mask[:, i : i + 1], cache=cache)))
    incremental = torch.cat(chunks, dim=1)
    assert torch.allclose(full[mask], incremental[mask], atol=1e-5)


def test_left_padding_does_not_change_real_positions():
    model = _causal()
    ids = torch.randint(5, 40, (1, 6))
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], dim=1)
    mask = torch.tensor([[False, False] + [True] * 6])
    alone = model.logits(model(ids))
    together = model.logits(model(padded, mask))[:, 2:]
    assert torch.allclose(alone, together, atol=1e-5)


def test_cache_select_drops_rows():
    model = _causal()
    ids = torch.randint(5, 40, (4, 5))
    cache = model.new_cache(4, 8, "cpu")
    model(ids, cache=cache)
    cache.select(torch.tensor([0, 2]))
    step = model.logits(model(ids[[0, 2], :1], cache=cache))
    reference = model.logits(model(torch.cat([ids[[0, 2]], ids[[0, 2], :1]], dim=1)))[:, -1:]
    assert torch.allclose(step, reference, atol=1e-5)


def test_bidirectional_padding_is_hidden_and_finite():
    torch.manual_seed(0)
    model = Transformer(40, d_model=32, n_layers=2, n_heads=4).eval()
    ids = torch.randint(5, 40, (2, 7))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 5:] = False
    out = model(ids, mask)
    assert torch.isfinite(out).all()
    alone = model(ids[:1, :5])
    assert torch.allclose(out[0, :5], alone[0], atol=1e-5)


@pytest.mark.parametrize("token_shift", [False, True])
def test_padding_on_either_side_changes_no_real_token_of_a_bidirectional_model(token_shift):
    torch.manual_seed(0)
    model = Transformer(
        40, d_model=32, n_layers=2, n_heads=4, learned_positions=16, token_shift=token_shift
    ).eval()
    ids = torch.randint(5, 40, (1, 5))
    pad = torch.zeros(1, 3, dtype=torch.long)
    real, hidden = torch.ones(1, 5, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool)
    alone = model(ids)
    left = model(torch.cat([pad, ids], dim=1), torch.cat([hidden, real], dim=1))[:, 3:]
    right = model(torch.cat([ids, pad], dim=1), torch.cat([real, hidden], dim=1))[:, :5]
    assert torch.allclose(left, alone, atol=1e-5)
    assert torch.allclose(right, alone, atol=1e-5)


def test_time_conditioning_starts_as_identity_and_requires_cond():
    torch.manual_seed(0)
    model = Transformer(40, d_model=32, n_layers=1, n_heads=4, time_conditioning=True).eval()
    ids = torch.randint(5, 40, (2, 5))
    # adaLN is zero-initialised: every noise level gives the same output before training
    assert torch.allclose(model(ids, cond=torch.tensor([0.1, 0.9])), model(ids, cond=torch.tensor([0.5, 0.5])))
    with pytest.raises(ValueError, match="time-conditioned"):
        model(ids)


def test_filter_logits_top_k_top_p_temperature():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(sampling.filter_logits(logits, top_k=2)[0, 2:]).all()
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, 0.03
    kept = torch.isfinite(sampling.filter_logits(logits, top_p=0.8)[0])
    assert kept.tolist() == [True, True, False, False]
    assert probs[0] < 0.8 < probs[:2].sum()
    greedy = sampling.filter_logits(logits, temperature=0)
    assert torch.isfinite(greedy[0]).tolist() == [True, False, False, False]
    assert torch.allclose(sampling.filter_logits(logits, temperature=2.0), logits / 2)


def test_gumbel_sampling_matches_the_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1, 1e-6]))
    n = 20000
    gens = sampling.make_generators([0])
    draws = torch.cat([sampling.gumbel_argmax(logits.expand(1, n, 4), gens)[0] for _ in range(1)])
    freq = torch.bincount(draws, minlength=4).double() / n
    # 4 standard errors of a binomial proportion
    for p, f in zip([0.7, 0.2, 0.1], freq[:3].tolist(), strict=True):
        assert abs(f - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_per_row_generators_make_samples_batch_size_invariant():
    logits = torch.randn(8, 6, 30)
    seeds = list(range(100, 108))
    together = sampling.sample(logits, sampling.make_generators(seeds), top_k=10)
    alone = sampling.sample(logits[3:4], sampling.make_generators(seeds[3:4]), top_k=10)
    assert torch.equal(together[3:4], alone)


def test_confidence_kinds_rank_sharper_distributions_higher():
    sharp = torch.tensor([0.9, 0.05, 0.05])
    flat = torch.tensor([0.4, 0.35, 0.25])
    probs = torch.stack([sharp, flat])
    for kind in ("top_prob", "margin", "neg_entropy"):
        score = sampling.confidence(probs, kind)
        assert score[0] > score[1], kind
    with pytest.raises(ValueError):
        sampling.confidence(probs, "nope")  # type: ignore[arg-type]


def test_learned_positions_make_a_bidirectional_model_see_absolute_position():
    torch.manual_seed(0)
    rotary_only = Transformer(40, d_model=32, n_layers=1, n_heads=4).eval()
    torch.manual_seed(0)
    learned = Transformer(40, d_model=32, n_layers=1, n_heads=4, learned_positions=8).eval()
    same = torch.full((1, 4), 7)  # identical tokens: only absolute position can tell them apart
    assert torch.allclose(rotary_only(same)[0, 0], rotary_only(same)[0, 3], atol=1e-5)
    assert not torch.allclose(learned(same)[0, 0], learned(same)[0, 3], atol=1e-3)
    # positions past the table reuse its last row instead of failing
    assert torch.isfinite(learned(torch.randint(5, 40, (1, 12)))).all()


def test_window_layout_pads_prompts_left_and_targets_with_eos_then_pad():
    from xlm_core.components import DataShape, Vocab
    from xlm_core.nn.window import left_pad, prompt_width, target_window

    vocab = Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
    shape = DataShape(prompt_length=3, target_length=4)
    prompts = [[7, 8], []]
    width = prompt_width(prompts, shape)
    assert width == 3 and prompt_width([[9] * 5], shape) == 5  # a longer prompt widens the budget
    ids, real = left_pad(prompts, width, vocab.pad_id)
    assert ids.tolist() == [[0, 7, 8], [0, 0, 0]]
    assert real.tolist() == [[False, True, True], [False, False, False]]
    window = target_window([[5, 6], [9, 9, 9, 9]], vocab, shape)
    assert window.tolist() == [[5, 6, 3, 0, 0], [9, 9, 9, 9, 3]]
    with pytest.raises(ValueError, match="target_length"):
        target_window([[5] * 5], vocab, shape)


def test_token_shift_lets_a_position_read_its_neighbours_before_attention():
    torch.manual_seed(0)
    shifted = Transformer(40, d_model=32, n_layers=1, n_heads=4, token_shift=True).eval()
    torch.manual_seed(0)
    plain = Transformer(40, d_model=32, n_layers=1, n_heads=4).eval()
    for model in (shifted, plain):
        model.blocks = torch.nn.ModuleList()  # no attention: what each position's input holds
    a = torch.tensor([[5, 6, 7, 8, 9]])
    b = a.clone()
    b[0, 2] = 20
    changed = lambda m: (m(a) - m(b)).abs().amax(-1)[0] > 1e-6  # noqa: E731
    assert changed(plain).tolist() == [False, False, True, False, False]
    assert changed(shifted).tolist() == [False, True, True, True, False]
    with pytest.raises(ValueError, match="bidirectional"):
        Transformer(40, d_model=32, n_layers=1, n_heads=4, causal=True, token_shift=True)


def _vocab():
    from xlm_core.components import Vocab

    return Vocab(size=20, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)


def test_window_kit_lays_out_training_rows_and_masks_exactly_m_positions():
    from xlm_core.components import DataShape, Example
    from xlm_core.nn.window import append_window, exactly_masked, training_rows, window_length

    vocab, shape = _vocab(), DataShape(prompt_length=2, target_length=3)
    assert window_length(shape) == 4 and window_length(shape, max_new_tokens=6) == 7
    prompt_ids, prompt_real, window = training_rows([Example((7,), (5, 6)), Example((), ())], vocab, shape)
    assert prompt_ids.tolist() == [[0, 7], [0, 0]] and window.tolist() == [[5, 6, 3, 0], [3, 0, 0, 0]]
    ids, real = append_window(prompt_ids, prompt_real, window)
    assert ids.tolist() == [[0, 7, 5, 6, 3, 0], [0, 0, 3, 0, 0, 0]]
    assert real.tolist() == [[False, True] + [True] * 4, [False, False] + [True] * 4]
    counts = torch.arange(9).repeat(50)
    masked = exactly_masked(counts, 8, torch.Generator().manual_seed(0))
    assert torch.equal(masked.sum(dim=1), counts)
    assert masked[counts == 4].float().mean(dim=0).sub(0.5).abs().max() < 0.2  # uniform positions


def test_window_kit_reads_outputs_up_to_the_first_eos_or_pad():
    from xlm_core.nn.window import (
        first_end,
        output_decided,
        output_ids,
        output_lengths,
        window_logits,
    )

    vocab, m = _vocab(), 1
    window = torch.tensor(
        [[5, 6, 3, 9], [5, m, 0, m], [5, 6, 7, 8], [m, 6, 7, 3], [5, 6, 7, m], [3, 0, 0, 0]]
    )
    assert first_end(window, vocab).tolist() == [2, 2, 4, 3, 4, 0]
    assert output_lengths(window, vocab).tolist() == [2, 2, 3, 3, 3, 0]  # at most W - 1
    # a masked position before the end leaves the output open; one after it does not matter
    assert output_decided(window, vocab).tolist() == [True, False, True, False, False, True]
    assert output_decided(window[:, :-1], vocab)[4]  # MDLM never decides the last position
    assert output_ids(window, output_lengths(window, vocab), vocab).tolist() == [
        [5, 6, 0], [5, m, 0], [5, 6, 7], [m, 6, 7], [5, 6, 7], [0, 0, 0]
    ]
    banned = window_logits(torch.zeros(2, vocab.size), vocab)
    assert banned.isinf().sum(dim=1).tolist() == [3, 3] and banned[:, [0, 3, 5]].eq(0).all()


def test_unmasking_picks_the_most_confident_eligible_positions_leftmost_first():
    from xlm_core.nn.unmasking import above_threshold, choose_to_unmask, most_confident
    from xlm_core.plugins import ConfidenceSettings

    score = torch.tensor([[0.2, 0.9, 0.9, 0.5, 0.9], [0.1, 0.1, 0.1, 0.1, 0.1]])
    eligible = torch.tensor([[True, False, True, True, True], [False, True, True, False, True]])
    assert most_confident(score, eligible, 2).int().tolist() == [[0, 0, 1, 0, 1], [0, 1, 1, 0, 0]]
    assert most_confident(score, eligible, 9).tolist() == eligible.tolist()  # fewer than k: all
    assert above_threshold(score, eligible, 0.4).int().tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert not above_threshold(score, torch.zeros_like(eligible), 0.0).any()
    settings = ConfidenceSettings(sampler="threshold", threshold=0.4)
    assert torch.equal(choose_to_unmask(score, eligible, settings), above_threshold(score, eligible, 0.4))


def test_reading_order_picks_the_leftmost_masked_positions():
    from xlm_core.nn.unmasking import choose_to_unmask, leading_above_threshold, leftmost
    from xlm_core.plugins import ConfidenceSettings

    score = torch.tensor([[0.2, 0.9, 0.9, 0.5, 0.9], [0.1, 0.95, 0.95, 0.1, 0.95], [0.9, 0.9, 0.9, 0.9, 0.9]])
    eligible = torch.tensor(
        [[True, False, True, True, True], [False, True, True, False, True], [False, False, False, False, False]]
    )
    assert leftmost(eligible, 2).int().tolist() == [[1, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert leftmost(eligible, 9).tolist() == eligible.tolist()
    # the first masked position always; then the run of masked positions above the threshold, which a
    # decided position (row 1, position 3) does not break and a low score (row 0, position 3) ends
    assert leading_above_threshold(score, eligible, 0.6).int().tolist() == [
        [1, 0, 1, 0, 0], [0, 1, 1, 0, 1], [0, 0, 0, 0, 0]
    ]  # fmt: skip
    assert leading_above_threshold(score, eligible, 0.0).tolist() == eligible.tolist()
    assert leading_above_threshold(score, eligible, 1.0).tolist() == leftmost(eligible, 1).tolist()
    settings = ConfidenceSettings(sampler="threshold", threshold=0.6, order="left_to_right")
    assert torch.equal(choose_to_unmask(score, eligible, settings), leading_above_threshold(score, eligible, 0.6))
    settings = ConfidenceSettings(sampler="confidence", k=2, order="left_to_right")
    assert torch.equal(choose_to_unmask(score, eligible, settings), leftmost(eligible, 2))


def test_reading_order_needs_a_sampler_that_chooses_positions():
    from typing import Literal

    from pydantic import ValidationError

    from xlm_core.plugins import ConfidenceSettings

    class Settings(ConfidenceSettings):  # a family with a sampler of its own, as MDLM's ancestral
        sampler: Literal["ancestral", "confidence", "threshold"] = "ancestral"

    Settings(sampler="threshold", order="left_to_right")
    with pytest.raises(ValidationError, match="order=left_to_right applies to the confidence and threshold"):
        Settings(order="left_to_right")


def test_a_threshold_no_confidence_can_pass_is_refused():
    from pydantic import ValidationError

    from xlm_core.plugins import ConfidenceSettings

    ConfidenceSettings(sampler="threshold", threshold=1.0)  # the scale's top: one position per step
    ConfidenceSettings(sampler="threshold", confidence="neg_entropy", threshold=-0.5)
    ConfidenceSettings(sampler="confidence", confidence="neg_entropy")  # the unused default 0.9 is fine
    with pytest.raises(ValidationError, match="threshold=90.0 is above every top_prob confidence"):
        ConfidenceSettings(sampler="threshold", threshold=90)
    with pytest.raises(ValidationError, match="above every neg_entropy confidence"):
        ConfidenceSettings(sampler="threshold", confidence="neg_entropy", threshold=0.5)


def test_unmasking_selects_what_both_former_orders_selected():
    """MDLM ranked positions through a scatter of a stable sort, MLM took the sorted top k and the
    argmax: with ties everywhere, every formulation picks the same positions."""
    from xlm_core.nn.unmasking import above_threshold, most_confident

    gen = torch.Generator().manual_seed(0)
    score = torch.randint(0, 4, (500, 9), generator=gen).float() / 4  # many ties
    eligible = torch.rand(500, 9, generator=gen) < 0.6
    eligible[:, 0] |= ~eligible.any(dim=1)  # every row has something to decide, as in decoding
    masked_score = score.masked_fill(~eligible, float("-inf"))
    order = torch.sort(masked_score, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(9).expand_as(order).contiguous())
    for k in (1, 2, 5):
        assert torch.equal(most_confident(score, eligible, k), eligible & (rank < k))
    for tau in (0.3, 0.6, 1.0):
        by_rank = eligible & ((masked_score > tau) | (rank == 0))
        by_argmax = (eligible & (masked_score > tau)).scatter(1, masked_score.argmax(1, keepdim=True), True)
        assert torch.equal(above_threshold(score, eligible, tau), by_rank)
        assert torch.equal(by_rank, by_argmax)


def test_cpu_dropout_drops_p_keeps_the_mean_and_repeats_under_a_seed():
    from xlm_core.nn.dropout import Dropout, dropout

    torch.manual_seed(0)
    y = dropout(torch.ones(1_000_000), 0.1)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.002  # ~7 standard errors of a million Bernoulli(0.1) draws
    assert abs(y.mean().item() - 1.0) < 0.003
    kept = y.unique().tolist()
    assert kept[0] == 0.0 and kept[1:] == [pytest.approx(65536 / (65536 - 6554))]  # 0.1 -> 6554 / 2^16
    torch.manual_seed(3)
    a = dropout(torch.ones(7, 5), 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(torch.ones(7, 5), 0.5))
    x = torch.randn(6, 9, requires_grad=True)
    out = dropout(x, 0.3)
    out.backward(torch.ones_like(out))
    assert torch.allclose(x.grad, out.detach() / x.detach())  # the gradient is the mask times the scale
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert dropout(torch.ones(0, 3), 0.5).shape == (0, 3)
    layer = Dropout(0.25)
    assert layer.eval()(x) is x
    assert (layer.train()(torch.ones(10_000)) == 0).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_explicit_attention_is_scaled_dot_product_attention(dtype):
    """The CPU path taken with dropout: without its dropout it equals torch's attention, for
    the causal flag, a boolean mask (with a key longer than the queries) and both."""
    import torch.nn.functional as F

    from xlm_core.nn.attention import _explicit_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, dtype=dtype) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask |= torch.eye(5, dtype=torch.bool)
    tol = {"atol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2}
    for attn_mask, causal in ((None, True), (mask, False), (None, False)):
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)
        assert torch.allclose(_explicit_attention(q, k, v, attn_mask, 0.0, causal), want, **tol)
    long_k, long_v = torch.randn(2, 3, 7, 8, dtype=dtype), torch.randn(2, 3, 7, 8, dtype=dtype)
    wide = torch.rand(2, 1, 5, 7) > 0.3
    wide[..., 0] = True
    want = F.scaled_dot_product_attention(q, long_k, long_v, attn_mask=wide)
    assert torch.allclose(_explicit_attention(q, long_k, long_v, wide, 0.0, False), want, **tol)
    want = F.scaled_dot_product_attention(q, long_k, long_v, is_causal=True)
    assert torch.allclose(_explicit_attention(q, long_k, long_v, None, 0.0, True), want, **tol)
