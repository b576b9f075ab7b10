"""The energy score is minimised in expectation by the true distribution; the pool algorithm sharpens."""

from __future__ import annotations

import math

import pytest
import torch
from xlm_calm.energy import energy_score
from xlm_calm.pool import choose


def mixture(
    n: int, generator: torch.Generator, shift: float = 0.0, scale: float = 1.0
) -> torch.Tensor:
    """``(n, 2)`` draws of a two-component 2-D Gaussian mixture, moved by ``shift`` and widened by ``scale``."""
    centres = torch.tensor([[-1.0, 0.0], [1.5, 1.0]])
    which = (torch.rand(n, generator=generator) < 0.3).long()
    spread = torch.tensor([0.5, 0.3])[which, None]
    return shift + scale * (centres[which] + spread * torch.randn(n, 2, generator=generator))


def expected_score(
    candidate: dict, beta: float, items: int = 4000, samples: int = 8
) -> tuple[float, float]:
    """The mean score over ``items`` outcomes of the true mixture, and its standard error."""
    g = torch.Generator().manual_seed(0)
    outcomes = mixture(items, g)[None]  # (1, items, 2): one outcome per item
    draws = mixture(samples * items, g, **candidate).view(samples, items, 2)
    score = energy_score(draws, outcomes, beta)
    return float(score.mean()), float(score.std() / math.sqrt(items))


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5])
def test_the_true_distribution_has_the_lowest_expected_score(beta):
    truth, se = expected_score({}, beta)
    for wrong in ({"shift": 0.4}, {"scale": 0.6}, {"scale": 1.5}):
        other, other_se = expected_score(wrong, beta)
        assert other - truth > 3 * math.hypot(se, other_se), (wrong, truth, other)


def test_the_estimate_is_unbiased_for_a_point_mass():
    """P = delta at 0, y = 3 e_1: E||x - y|| = 3 and the repulsion is 0."""
    samples = torch.zeros(4, 5, 2)
    targets = torch.zeros(1, 5, 2)
    targets[..., 0] = 3.0
    assert torch.allclose(energy_score(samples, targets), torch.full((5,), 3.0))


def test_gradients_are_finite_when_samples_coincide():
    samples = torch.zeros(3, 2, 4, requires_grad=True)
    energy_score(samples, torch.randn(5, 2, 4), beta=0.5).sum().backward()
    assert torch.isfinite(samples.grad).all()


def frequencies(
    probs: list[float], temperature: float, pool: int = 200, trials: int = 3000
) -> torch.Tensor:
    """How often each outcome of a categorical is chosen from pools of its draws (one token per chunk)."""
    g = torch.Generator().manual_seed(1)
    drawn = torch.multinomial(torch.tensor(probs), trials * pool, replacement=True, generator=g)
    pools = drawn.view(trials, pool, 1)
    index = choose(pools, temperature, torch.rand(trials, generator=g, dtype=torch.float64))
    picked = pools[torch.arange(trials), index, 0]
    return torch.bincount(picked, minlength=len(probs)).double() / trials


def test_temperature_sharpens_toward_p_to_the_one_over_t():
    probs = [0.6, 0.3, 0.1]
    half = torch.tensor(probs, dtype=torch.float64) ** 2
    assert torch.allclose(frequencies(probs, 0.5), half / half.sum(), atol=0.03)
    assert torch.allclose(
        frequencies(probs, 1.0), torch.tensor(probs, dtype=torch.float64), atol=0.03
    )
    third = torch.tensor(probs, dtype=torch.float64) ** (1 / 0.4)  # 1/T = 2.5, not an integer
    assert torch.allclose(frequencies(probs, 0.4), third / third.sum(), atol=0.03)
    assert frequencies(probs, 0.0)[0] == 1.0  # the mode of every pool


def test_a_pool_without_n_agreeing_draws_falls_back_to_its_most_frequent_chunks():
    pool = torch.tensor([[[1, 2], [3, 4], [1, 2], [5, 6]]])  # (1, 4, 2): [1, 2] twice
    for u in torch.linspace(0, 0.999, 7, dtype=torch.float64):
        assert choose(pool, 0.25, u[None]).item() in (0, 2)  # 1/T = 4 > 2: the level falls to 2
