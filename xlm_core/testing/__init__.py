"""The conformance kit: checks every family (ours and third parties') must pass.

Use it from a plugin's tests::

    import pytest
    from xlm_core.testing import CHECK_NAMES, run_check

    @pytest.mark.parametrize("check", CHECK_NAMES)
    def test_conformance(check):
        run_check("mdlm", check)

or from the command line: ``xlm plugins validate mdlm``. The component checks run
on a tiny setup (:class:`TinySetup`): the family's ``tiny`` preset shrunk to
``d_model=32, n_layers=2, n_heads=2``, a 24-token vocabulary, prompts of at most
6 and targets of at most 8 tokens, on CPU. ``presets`` and
``entry_module_without_torch`` need only the manifest; ``resolve`` builds the tiny
setup the checks after it use. A failing check raises ``AssertionError`` whose
message says what is wrong and what was expected.

- ``tiny``: the tiny set-up (:class:`TinySetup`, :func:`tiny_examples`, ``TINY_*``);
- ``contracts``: the runtime contracts of batches, model outputs, losses and predictions;
- ``family_checks``: the checks of the manifest and the package;
- ``checks``: the checks of the components;
- ``run``: the entry points, :func:`run_check` and :func:`run_conformance`.
"""

from xlm_core.testing.family_checks import entry_module
from xlm_core.testing.run import CHECK_NAMES, CheckResult, run_check, run_conformance
from xlm_core.testing.tiny import (
    PREDICT_SEEDS,
    TINY_BACKBONE,
    TINY_SHAPE,
    TINY_VOCAB,
    TinySetup,
    sharpen,
    tiny_examples,
)

__all__ = [
    "CHECK_NAMES",
    "PREDICT_SEEDS",
    "TINY_BACKBONE",
    "TINY_SHAPE",
    "TINY_VOCAB",
    "CheckResult",
    "TinySetup",
    "entry_module",
    "run_check",
    "run_conformance",
    "sharpen",
    "tiny_examples",
]
