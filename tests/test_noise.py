"""RowNoise: per-row streams drawn for a whole batch at once, the same draws whatever the batch."""

from __future__ import annotations

import math

import pytest
import torch

from xlm_core.nn import noise as noise_module
from xlm_core.nn.noise import RowNoise, mix64
from xlm_core.nn.sampling import gumbel_argmax, sample, uniform

MASK64 = (1 << 64) - 1


def splitmix64_finaliser(z: int) -> int:
    """The reference: SplitMix64's finaliser on Python integers."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_mix64_gives_splitmix64s_bits_with_wrapping_int64_arithmetic():
    values = [0, 1, 12345, (1 << 63) - 1, 1 << 63, MASK64, 0xDEADBEEFCAFEBABE, 0x9E3779B97F4A7C15]
    signed = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values])
    assert [v & MASK64 for v in mix64(signed).tolist()] == [splitmix64_finaliser(v) for v in values]


def test_a_rows_draws_do_not_depend_on_the_rows_drawn_with_it():
    seeds = [7, 8, 9, 10, 11]
    together = RowNoise(seeds)
    first = together.uniform(torch.arange(5), (3, 4))
    second = together.uniform(torch.tensor([4, 2]), (3, 4))  # a subset, in another order
    alone = RowNoise([seeds[2]])
    assert torch.equal(alone.uniform(torch.tensor([0]), (3, 4))[0], first[2])
    assert torch.equal(alone.uniform(torch.tensor([0]), (3, 4))[0], second[1])
    assert together.draws.tolist() == [1, 1, 2, 1, 2]


def test_a_row_listed_k_times_takes_k_successive_draws():
    repeated = RowNoise([5, 6]).uniform(torch.tensor([1, 0, 1, 1]), (6,))
    one_by_one = RowNoise([5, 6])
    draws = [one_by_one.uniform(torch.tensor([1]), (6,))[0] for _ in range(3)]
    assert torch.equal(repeated[0], draws[0])
    assert torch.equal(repeated[2], draws[1])
    assert torch.equal(repeated[3], draws[2])


def test_uniforms_look_uniform_and_seeds_differ():
    u = RowNoise(range(16)).uniform(torch.arange(16), (4096,))
    assert u.dtype == torch.float64 and u.min() >= 0.0 and u.max() < 1.0
    n = u.numel()
    assert abs(u.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / n)
    counts = torch.histc(u.float(), bins=16, min=0.0, max=1.0)
    chi2 = (((counts - n / 16) ** 2) / (n / 16)).sum().item()
    assert chi2 < 50  # 15 degrees of freedom: 50 is far in the tail
    # neighbouring rows and neighbouring elements are uncorrelated
    assert abs(torch.corrcoef(torch.stack([u[0], u[1]]))[0, 1].item()) < 0.1
    assert abs(torch.corrcoef(torch.stack([u[0, :-1], u[0, 1:]]))[0, 1].item()) < 0.1
    assert not torch.equal(u[0], u[1])


def test_sampling_with_row_noise_is_batch_invariant():
    logits = torch.randn(8, 6, 30)
    seeds = list(range(100, 108))
    together = sample(logits, RowNoise(seeds).select(range(8)), top_k=10)
    alone = sample(logits[3:4], RowNoise(seeds[3:4]).select([0]), top_k=10)
    assert torch.equal(together[3:4], alone)


def test_gumbel_sampling_with_row_noise_matches_the_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1, 1e-6]))
    n = 20000
    draws = gumbel_argmax(logits.expand(1, n, 4), RowNoise([0]).select([0]))[0]
    freq = torch.bincount(draws, minlength=4).double() / n
    for p, f in zip([0.7, 0.2, 0.1], freq[:3].tolist(), strict=True):
        assert abs(f - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_uniform_takes_generators_or_row_noise_and_an_empty_selection():
    assert uniform(RowNoise([1]).select([]), (3,), "cpu").shape == (0, 3)
    assert uniform([torch.Generator().manual_seed(1)], (3,), "cpu").shape == (1, 3)


@pytest.mark.parametrize("seed", [-1, 1 << 63, (1 << 64) + 5])
def test_any_python_integer_is_a_seed(seed):
    assert RowNoise([seed]).uniform(torch.tensor([0]), (2,)).shape == (1, 2)
    assert noise_module._int64(seed) == noise_module._int64(seed & MASK64)
