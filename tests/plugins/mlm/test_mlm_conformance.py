"""The MLM family passes the conformance kit every plugin runs, under each decoding strategy."""

from __future__ import annotations

import pytest

from xlm_core.testing import CHECK_NAMES, run_check


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance(check):
    run_check("mlm", check)


@pytest.mark.parametrize(
    "settings",
    [
        {"strategy": "confidence", "k": 2, "temperature": 1.0},
        {"strategy": "threshold", "threshold": 0.7, "temperature": 1.0, "top_p": 0.9},
        {"sampler": "confidence", "k": 2, "order": "left_to_right"},
    ],
    ids=["confidence", "threshold", "confidence-left-to-right"],
)
@pytest.mark.parametrize("check", ["predictor_terminates", "determinism"])
def test_conformance_of_the_other_strategies(check, settings):
    run_check("mlm", check, settings_overrides=settings)
