"""The arithmetic of sample quality: distinct-n, per-sample statistics, the Brier estimator, BrierLM."""

from __future__ import annotations

import math
import random

import pytest

from xlm_core.sample_metrics import (
    BrierTotals,
    SampleStats,
    brier_estimate,
    brier_lm,
    distinct_n,
    document_lengths,
    greedy_note,
    null_reasons,
)

EOS = 3


def test_distinct_n_counts_distinct_ngrams_of_one_sequence():
    assert distinct_n([1, 1, 1, 1], 1) == 0.25
    assert distinct_n([1, 2, 1, 2], 2) == pytest.approx(2 / 3)
    assert distinct_n([1, 2, 3], 3) == 1.0
    assert distinct_n([1, 2], 3) is None


def test_document_lengths_split_at_eos_and_count_cut_pieces():
    assert document_lengths([5, 6, EOS, 7, EOS, 8, 9, 9], EOS) == [2, 1, 3]
    assert document_lengths([EOS, 5, EOS], EOS) == [0, 1]
    assert document_lengths([], EOS) == []


def test_sample_stats_are_means_over_samples():
    stats = SampleStats(EOS)
    stats.add([5, 5, EOS, 6])
    stats.add([7, 8, 9, 7])
    out = stats.summary("data_")
    assert out["data_mean_length"] == 4.0
    assert out["data_distinct_1"] == pytest.approx(3 / 4)  # EOS counts as a token
    assert out["data_distinct_4"] == 1.0
    assert out["data_mean_doc_length"] == pytest.approx((2 + 1 + 4) / 3)  # EOS not counted
    assert out["data_entropy"] > 0
    assert "mean_doc_length" not in SampleStats().summary()  # unpacked units: no documents


def test_brier_estimate_takes_the_values_of_the_two_sample_estimator():
    assert brier_estimate([1, 2], [1, 2], [1, 2], 2) == 1  # both right, and equal
    assert brier_estimate([1, 2], [1, 3], [1, 2], 2) == 1  # one right
    assert brier_estimate([1, 3], [1, 4], [1, 2], 2) == 0  # none right, different
    assert brier_estimate([1, 3], [1, 3], [1, 2], 2) == -1  # none right, equal
    assert brier_estimate([1, 3], [1, 3], [1, 2], 1) == 1  # the first token agrees
    assert brier_estimate([1], [1], [1, 2], 2) == 0  # samples too short match nothing


def test_brier_lm_is_100_times_the_geometric_mean_clipped_at_zero():
    assert brier_lm([0.5, 0.5, 0.5, 0.5]) == pytest.approx(50.0)
    assert brier_lm([0.8, 0.4, 0.2, 0.1]) == pytest.approx(100 * (0.8 * 0.4 * 0.2 * 0.1) ** 0.25)
    assert brier_lm([0.5, -0.1, 0.5, 0.5]) == 0.0
    # two negative factors: the paper's max(product, 0) would report a positive score
    assert brier_lm([0.5, -0.1, -0.1, 0.5]) == 0.0
    assert brier_lm([0.5, None, 0.5, 0.5]) is None


def test_the_estimator_is_unbiased_for_two_p_minus_the_collision_probability():
    # a categorical next token: E[1[x1 = y] + 1[x2 = y] - 1[x1 = x2]] = 2 p(y) - sum p^2
    rng = random.Random(0)
    p = [0.5, 0.3, 0.15, 0.05]
    y = 1
    totals = BrierTotals()
    for _ in range(20000):
        x1, x2 = rng.choices(range(4), p, k=2)
        totals.add([x1], [x2], [y])
    out = totals.summary()
    exact = 2 * p[y] - sum(q * q for q in p)
    assert abs(out["brier_1"] - exact) < 4 * out["brier_1_stderr"]
    assert out["brier_2"] is None and out["brier_lm"] is None  # a truth of one token
    assert set(null_reasons(out)) >= {"brier_2", "brier_2_stderr", "brier_lm"}


def test_stderr_is_the_standard_error_of_the_mean():
    totals = BrierTotals()
    for x in ([1], [2], [1], [2]):  # estimates 1, -1, 1, -1 ... with y = [1], x2 = x1
        totals.add(x, x, [1])
    out = totals.summary()
    assert out["brier_1"] == 0.0
    assert out["brier_1_stderr"] == pytest.approx(math.sqrt(4 / 3 / 4))


def test_greedy_sampling_is_noted():
    class Settings:
        temperature = 0.0

    assert "predictor.temperature" in greedy_note(Settings())
    Settings.temperature = 1.0
    assert greedy_note(Settings()) == {}
