"""Noise schedules: alpha_t, its derivative, the NELBO weight, the ancestral step and the inverse."""

from __future__ import annotations

import math

import pytest
import torch
from xlm_mdlm.schedule import SCHEDULES, Cosine, LogLinear, make_schedule

EPS = 1e-3
T = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)


def test_closed_forms():
    log_linear, cosine = LogLinear(EPS), Cosine(EPS)
    assert torch.allclose(log_linear.alpha(T), 1 - (1 - EPS) * T)
    assert torch.allclose(cosine.alpha(T), EPS + (1 - EPS) * torch.cos(math.pi * T / 2))
    assert torch.allclose(log_linear.loss_weight(T), 1 / T)  # the paper's 1/t


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_endpoints(name):
    schedule = make_schedule(name, EPS)
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(schedule.alpha(ends), torch.tensor([1.0, EPS], dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_alpha_prime_matches_finite_differences(name):
    schedule = make_schedule(name, EPS)
    h = 1e-6
    numeric = (schedule.alpha(T + h) - schedule.alpha(T - h)) / (2 * h)
    assert torch.allclose(schedule.alpha_prime(T), numeric, rtol=1e-6, atol=1e-8)
    assert (schedule.alpha_prime(T) < 0).all()


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_loss_weight_is_minus_alpha_prime_over_mask_rate(name):
    schedule = make_schedule(name, EPS)
    expected = -schedule.alpha_prime(T) / (1 - schedule.alpha(T))
    assert torch.allclose(schedule.loss_weight(T), expected, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_ancestral_step_probability(name):
    schedule = make_schedule(name, EPS)
    t, s = T, T * 0.7
    expected = (schedule.alpha(s) - schedule.alpha(t)) / (1 - schedule.alpha(t))
    assert torch.allclose(schedule.unmask_probability(t, s), expected)
    # the last step of a sampler (s = 0) unmasks everything that is left
    assert (schedule.unmask_probability(t, torch.zeros_like(t)) == 1).all()


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_time_at_inverts_mask_rate(name):
    schedule = make_schedule(name, EPS)
    assert torch.allclose(schedule.time_at(schedule.mask_rate(T)), T, atol=1e-9)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="log-linear"):
        make_schedule("linear", EPS)
