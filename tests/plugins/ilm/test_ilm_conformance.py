"""The ILM family passes every check of the conformance kit, with single and parallel insertion."""

from __future__ import annotations

import pytest

from xlm_core.testing import CHECK_NAMES, run_check


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance(check):
    run_check("ilm", check)


@pytest.mark.parametrize("check", ["predictor_terminates", "determinism"])
def test_conformance_two_stage_parallel(check):
    settings = {"sampling": "two_stage", "parallel_k": 3, "parallel_threshold": 0.0, "top_k": 5}
    run_check("ilm", check, settings_overrides=settings)
