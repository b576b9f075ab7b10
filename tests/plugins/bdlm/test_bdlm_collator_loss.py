"""Layout, the corruption of each block, the clipped and position-dependent schedules, and the NELBO's expectation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from xlm_bdlm.collator import BDLMCollator
from xlm_bdlm.corruption import BlockSchedule, Corruption
from xlm_bdlm.loss import BDLMLoss

from xlm_core.components import IGNORE_INDEX, DataShape, Example
from xlm_core.nn.schedule import make_schedule
from xlm_core.testing import TINY_VOCAB as V

SHAPE = DataShape(prompt_length=3, target_length=4)  # a window of 5 positions


def test_layout_with_shift_block_size_not_dividing_the_window(make_config):
    config = make_config(block_size=2)
    batch = BDLMCollator(config, V, SHAPE)([Example((7, 8), (9,)), Example((), (10, 11, 12, 13))])
    # prefix: BOS + prompt, left-padded to the prompt budget + 1; window: 5 positions padded to 6
    assert batch.input_ids.tolist() == [
        [V.pad_id, V.bos_id, 7, 8, 9, V.eos_id, V.pad_id, V.pad_id, V.pad_id, V.pad_id],
        [V.pad_id, V.pad_id, V.pad_id, V.bos_id, 10, 11, 12, 13, V.eos_id, V.pad_id],
    ]
    assert batch.window == 6 and batch.needs_mask
    ignore = IGNORE_INDEX
    # targets: the blocks up to the EOS's block; the PAD inside that block is a target, the rest not
    assert batch.targets[:, 4:].tolist() == [
        [9, V.eos_id, ignore, ignore, ignore, ignore],
        [10, 11, 12, 13, V.eos_id, V.pad_id],
    ]
    assert batch.extras["u"].shape == (2, 3) and batch.extras["keys"].shape == (2, 6)


def test_a_packed_target_is_scored_through_its_final_eos(make_config):
    # packed text holds EOS between documents: the example ends at the EOS after the target
    config = make_config(block_size=2)
    batch = BDLMCollator(config, V, SHAPE)([Example((), (9, V.eos_id, 10))])
    assert batch.targets[0, -6:].tolist() == [9, V.eos_id, 10, V.eos_id, IGNORE_INDEX, IGNORE_INDEX]


def test_layout_without_shift_has_no_bos(make_config):
    config = make_config(block_size=5, shift=False)
    batch = BDLMCollator(config, V, SHAPE)([Example((7,), (9, 10))])
    assert batch.input_ids.tolist() == [[V.pad_id, V.pad_id, 7, 9, 10, V.eos_id, V.pad_id, V.pad_id]]


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"token_shift": True}, "token_shift"),
        ({"clip_min": 0.8, "clip_max": 0.5}, "clip_min"),
        ({"position_masking": 1.0}, "position_masking"),
        ({"block_size": 0}, "block_size"),
    ],
)
def test_refused_configs_name_the_key(overrides, key, make_config):
    with pytest.raises(ValidationError, match=key):
        make_config(**overrides)


def _draws(config, n=4000, seed=0):
    collator = BDLMCollator(config, V, SHAPE)
    return collator([Example((), (9, 10, 11, 12))] * n, torch.Generator().manual_seed(seed))


def test_clipping_applies_in_training_only(make_config):
    config = make_config(block_size=4, clip_min=0.45, clip_max=0.95)  # m / 4 in [0.45, 0.95]: 2 or 3
    batch = _draws(config)
    corruption, clean = Corruption(config, V.mask_id), batch.input_ids[:, -8:]
    for training, counts in ((True, {2, 3}), (False, {1, 2, 3, 4})):
        noisy, weight = corruption(clean, batch.extras["u"], batch.extras["keys"], training)
        masked = (noisy == V.mask_id).view(-1, 2, 4).sum(-1)
        assert set(masked.flatten().tolist()) == counts
        assert torch.allclose(weight.view(-1, 2, 4)[..., 0], 4 / masked.double())

    timed = make_config(block_size=4, nelbo_estimator="time", clip_min=0.3, clip_max=0.6)
    batch = _draws(timed)
    noisy, _ = Corruption(timed, V.mask_id)(batch.input_ids[:, -8:], batch.extras["u"], batch.extras["keys"], True)
    rate = (noisy == V.mask_id).double().mean()
    assert abs(float(rate) - 0.45 * (1 - 1e-3)) < 0.01  # log-linear: the mean rate of t ~ U[0.3, 0.6]


def test_position_dependent_masking_masks_later_positions_more_often(make_config):
    config = make_config(block_size=4, nelbo_estimator="time", position_masking=1.0)
    batch = _draws(config)
    noisy, _ = Corruption(config, V.mask_id)(batch.input_ids[:, -8:], batch.extras["u"], batch.extras["keys"], False)
    share = (noisy == V.mask_id).double().view(-1, 2, 4).mean(dim=(0, 1))
    assert (share[1:] > share[:-1] + 0.03).all(), share


@pytest.mark.parametrize("name", ["log-linear", "cosine"])
def test_position_weights_are_minus_alpha_prime_over_the_mask_rate(name):
    schedule = BlockSchedule(make_schedule(name, 1e-3), 4, strength=1.3)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    derivative = (schedule.mask_rates(t + h) - schedule.mask_rates(t - h)) / (2 * h)
    assert torch.allclose(schedule.weights(t), derivative / schedule.mask_rates(t), rtol=1e-5)
    # each position still runs from clean to masked, and unmasks completely by the last step
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(schedule.mask_rates(ends)[0], torch.zeros(4, dtype=torch.float64))
    assert (schedule.unmask_probability(t, torch.zeros_like(t)) == 1).all()


@pytest.mark.parametrize("name", ["log-linear", "cosine"])
@pytest.mark.parametrize("strength", [0.0, 1.0, 4.0])
def test_every_position_scores_its_whole_masking_range(name, strength):
    # Evaluation draws t ~ U[eps, 1]. A position is masked at rate r_j(t) with weight w_j(t);
    # r_j * w_j = -d alpha(t^k_j) / dt integrates to alpha(eps^k_j) - alpha(1), i.e. 1 - O(eps)
    # only when the position's masking time t^k_j reaches down to eps (k_j >= 1). Otherwise
    # part of that position's loss is missing and the NELBO is no bound.
    eps = 1e-3
    schedule = BlockSchedule(make_schedule(name, eps), 8, strength)
    t = eps + (1 - eps) * (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    covered = (schedule.mask_rates(t) * schedule.weights(t)).mean(0) * (1 - eps)
    assert ((covered > 1 - 3 * eps) & (covered < 1)).all(), covered


def test_weights_stay_finite_where_the_masking_time_underflows():
    schedule = BlockSchedule(make_schedule("cosine", 1e-3), 16, strength=8.0)
    t = torch.tensor([1e-3, 0.5], dtype=torch.float64)
    assert schedule.mask_rates(t)[0, 0] == 0  # (1e-3)^(e^15): never masked...
    assert torch.isfinite(schedule.weights(t)).all()  # ...and no NaN from 0 * inf in the loss


def _block_nlls(model, stream, clean, b, block, pattern):
    """Summed -log p of the masked positions of block b, masked at ``pattern`` (the rest clean)."""
    noisy = clean.clone()
    positions = [b * block + j for j, m in enumerate(pattern) if m]
    noisy[0, positions] = V.mask_id
    with torch.no_grad():
        log_probs = torch.log_softmax(model(stream, noisy=noisy).logits.double(), -1)[0]
    return sum(-float(log_probs[p, clean[0, p]]) for p in positions), positions


def _exact_count_nelbo(model, stream, clean, block):
    """E over each block's m ~ U{1..B} and uniform positions of sum (B / m) * -log p, by enumeration."""
    total = 0.0
    for b in range(clean.shape[1] // block):
        for pattern in itertools.product([False, True], repeat=block):
            m = sum(pattern)
            if m:
                s, _ = _block_nlls(model, stream, clean, b, block, pattern)
                total += (1 / block) * (block / m) * s / math.comb(block, m)
    return total


def _exact_time_nelbo(model, stream, clean, block, schedule, eps):
    """E over each block's t ~ U[eps, 1] and per-position masks, by enumeration and quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t = torch.tensor(eps + (1 - eps) * (nodes + 1) / 2, dtype=torch.float64)
    dt = torch.tensor(weights * (1 - eps) / 2, dtype=torch.float64)
    rates, w = schedule.mask_rates(t), schedule.weights(t)  # (T, B)
    total = torch.zeros_like(t)
    for b in range(clean.shape[1] // block):
        for pattern in itertools.product([False, True], repeat=block):
            if not any(pattern):
                continue
            mask = torch.tensor(pattern)
            prob = torch.where(mask, rates, 1 - rates).prod(-1)
            noisy = clean.clone()
            noisy[0, b * block : (b + 1) * block][mask] = V.mask_id
            with torch.no_grad():
                log_probs = torch.log_softmax(model(stream, noisy=noisy).logits.double(), -1)[0]
            nll = -log_probs[torch.arange(clean.shape[1]), clean[0]][b * block : (b + 1) * block]
            total += prob * (w * torch.where(mask, nll, 0.0)).sum(-1)
    return float((total * dt).sum()) / (1 - eps)


@pytest.mark.parametrize(
    "overrides",
    [{"nelbo_estimator": "count"}, {"nelbo_estimator": "time", "position_masking": 1.0}],
    ids=["count", "time-positions"],
)
def test_the_loss_is_an_unbiased_estimate_of_the_blockwise_nelbo(overrides, make_config, make_model):
    config = make_config(d_model=16, n_layers=1, block_size=2, **overrides)
    model = make_model(config, seed=3)
    shape = DataShape(prompt_length=1, target_length=3)  # a window of 4: two blocks of 2
    example = Example((7,), (9, 10, 11))  # EOS in the second block: both are scored
    collator, loss = BDLMCollator(config, V, shape), BDLMLoss(config, V)
    stream = collator([example]).input_ids
    clean = stream[:, -4:]
    if config.nelbo_estimator == "count":
        exact = _exact_count_nelbo(model, stream, clean, 2)
    else:
        exact = _exact_time_nelbo(model, stream, clean, 2, loss.corruption.schedule, config.eps)
    generator, means = torch.Generator().manual_seed(0), []
    with torch.no_grad():
        for _ in range(16):
            out = loss(model, collator([example] * 250, generator))
            means.append(out.nll_sum.item() / 250)
    means = np.array(means)
    stderr = means.std(ddof=1) / math.sqrt(len(means))
    assert abs(means.mean() - exact) < 4 * stderr, (means.mean(), exact, stderr)
