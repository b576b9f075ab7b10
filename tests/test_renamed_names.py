"""Python names renamed in xlm-core 0.2 still resolve, with one warning, until 0.3.0."""

from __future__ import annotations

import importlib

import pytest

from xlm_core.errors import XLMDeprecationWarning

RENAMED = [
    ("xlm_core.nn.sampling", "Confidence", "xlm_core.plugins.settings", "ConfidenceKind"),
    ("xlm_core.training", "resolve_precision", "xlm_core.devices", "lightning_precision"),
    ("xlm_core.pipeline", "native_bf16", "xlm_core.devices", "native_bf16"),
    ("xlm_core.pipeline", "task_info", "xlm_core.checkpoint", "task_info"),
    ("xlm_core.cli.eval", "Split", "xlm_core.cli.eval", "EvalSplit"),
    ("xlm_mlm.config", "Strategy", "xlm_mlm.config", "Sampler"),
]


@pytest.mark.parametrize("module, old, new_module, new", RENAMED, ids=[r[1] for r in RENAMED])
def test_an_old_python_name_is_the_new_object_with_one_warning(module, old, new_module, new):
    if module.startswith("xlm_mlm"):
        pytest.importorskip("xlm_mlm", reason="needs the mlm family")
    with pytest.warns(XLMDeprecationWarning, match=rf"{module}\.{old} is renamed .*until xlm-core 0\.3\.0"):
        value = getattr(importlib.import_module(module), old)
    assert value is getattr(importlib.import_module(new_module), new)


def test_an_unknown_name_is_still_an_attribute_error():
    import xlm_core.pipeline

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        xlm_core.pipeline.no_such_name  # noqa: B018


def test_ilm_max_length_is_max_new_tokens_with_one_warning():
    pytest.importorskip("xlm_ilm", reason="needs the ilm family")
    from xlm_ilm.config import ILMConfig, ILMSettings
    from xlm_ilm.predictor import ILMPredictor

    from xlm_core.testing import TINY_SHAPE, TINY_VOCAB

    predictor = ILMPredictor(ILMConfig(d_model=32, n_layers=1, n_heads=2), TINY_VOCAB, TINY_SHAPE)
    settings = ILMSettings(max_new_tokens=5)
    with pytest.warns(XLMDeprecationWarning, match="max_new_tokens"):
        assert predictor.max_length(settings) == predictor.max_new_tokens(settings) == 5
