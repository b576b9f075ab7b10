"""The conformance kit every plugin passes, run on the ARLM family."""

from __future__ import annotations

import pytest

from xlm_core.testing import CHECK_NAMES, run_check


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_conformance(check):
    run_check("arlm", check)
