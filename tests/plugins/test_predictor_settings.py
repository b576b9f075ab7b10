"""What every family's predictor shares: the predict preamble and one name per settings concept."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from xlm_core.errors import XLMDeprecationWarning
from xlm_core.plugins import get_registry
from xlm_core.predicting import as_settings, check_seeds, evaluating
from xlm_core.testing import TinySetup

FAMILIES = ["arlm", "ilm", "mdlm", "mlm"]

#: One name per concept, in the order ``xlm plugins show`` lists them in every family.
SHARED = [
    "temperature",
    "top_k",
    "top_p",
    "max_new_tokens",
    "sampler",
    "k",
    "confidence",
    "threshold",
    "reuse_logits",
    "steps",
]

#: (family, old spelling, new spelling, a value): the old spelling works for one release.
RENAMED = [
    ("mdlm", "cache", "reuse_logits", False),
    ("mlm", "strategy", "sampler", "confidence"),
    ("mlm", "iterations", "steps", 3),
    ("arlm", "use_cache", "kv_cache", False),
    ("ilm", "max_length", "max_new_tokens", 3),
    ("ilm", "sampling", "sampler", "two_stage"),
]


def _setup(name: str, **config_overrides) -> TinySetup:
    return TinySetup.build(get_registry().get(name), config_overrides=config_overrides)


def _same(a, b) -> bool:
    return a.sequences() == b.sequences() and torch.equal(a.nfe, b.nfe) and torch.equal(a.steps, b.steps)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_predictor_refuses_a_seed_count_that_does_not_match(name):
    setup = _setup(name)
    model = setup.model()
    with pytest.raises(ValueError, match="got 3 prompts but 2 seeds; pass one seed per prompt"):
        setup.predictor().predict(model, setup.prompts[:3], settings=setup.settings, seeds=[0, 1])


@pytest.mark.parametrize("name", FAMILIES)
def test_every_predictor_decodes_in_eval_and_inference_mode_and_restores_the_mode(name):
    setup = _setup(name, dropout=0.5)  # dropout would make a sample depend on more than its seed
    model = setup.model()
    seen = []
    for module in model.modules():  # ARLM decodes through a method, not forward
        module.register_forward_hook(
            lambda m, args, out: seen.append((m.training, torch.is_inference_mode_enabled()))
        )
    expected = setup.predictor().predict(
        model.eval(), setup.prompts, settings=setup.settings, seeds=list(range(len(setup.prompts)))
    )
    model.train()
    got = setup.predictor().predict(
        model, setup.prompts, settings=setup.settings, seeds=list(range(len(setup.prompts)))
    )
    assert _same(got, expected)
    assert model.training, "the caller's mode comes back"
    assert seen and set(seen) == {(False, True)}
    got.ids[:, :1] = 0  # ordinary tensors: a caller may change them in place
    assert not any(t.is_inference() for t in (got.ids, got.lengths, got.steps, got.nfe))


@pytest.mark.parametrize("name", FAMILIES)
def test_every_predictor_takes_settings_as_its_class_a_mapping_or_none(name):
    setup = _setup(name)
    model, predictor = setup.model(), setup.predictor()
    seeds = list(range(len(setup.prompts)))
    settings_class = type(setup.settings)
    defaults = predictor.predict(model, setup.prompts, settings=settings_class(), seeds=seeds)
    for settings in (None, {}, settings_class().model_dump()):
        assert _same(predictor.predict(model, setup.prompts, settings=settings, seeds=seeds), defaults)
    assert predictor.step_budget(None) == predictor.step_budget(settings_class())


def test_the_preamble_helpers():
    from xlm_mlm.config import MLMSettings

    from xlm_core.plugins import PredictorSettings

    assert as_settings(MLMSettings, None) == MLMSettings()
    # another settings object: only what its caller set carries over (MLM keeps its greedy default)
    assert as_settings(MLMSettings, PredictorSettings(top_k=3)) == MLMSettings(top_k=3)
    with pytest.raises(TypeError, match="MLMSettings, a mapping or None"):
        as_settings(MLMSettings, 3)
    check_seeds([[1], [2]], [5, 6])
    model = torch.nn.Linear(1, 1)
    with pytest.raises(RuntimeError), evaluating(model):
        assert not model.training
        raise RuntimeError
    assert model.training


@pytest.mark.parametrize(("name", "old", "new", "value"), RENAMED)
def test_an_old_setting_name_still_works_with_one_warning(name, old, new, value):
    settings_class = get_registry().get(name).manifest.predictor_settings
    with pytest.warns(XLMDeprecationWarning, match=f"{old} is renamed {new}") as caught:
        settings = settings_class(**{old: value})
    assert len(caught) == 1
    assert settings == settings_class(**{new: value})
    with pytest.warns(XLMDeprecationWarning, match=f"{old} is renamed {new}"):
        assert getattr(settings, old) == value
    assert old not in settings.model_dump()


def test_old_and_new_names_decode_alike():
    setup = _setup("mlm")
    model, predictor, seeds = setup.model(), setup.predictor(), list(range(len(setup.prompts)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XLMDeprecationWarning)
        old = {"strategy": "threshold", "threshold": 0.3, "reuse_logits": False}
        a = predictor.predict(model, setup.prompts, settings=old, seeds=seeds)
    new = {"sampler": "threshold", "threshold": 0.3, "reuse_logits": False}
    assert _same(a, predictor.predict(model, setup.prompts, settings=new, seeds=seeds))


@pytest.mark.parametrize(
    ("name", "settings"),
    [("mdlm", {"steps": 24}), ("mlm", {"steps": 30}), ("mlm", {"sampler": "threshold"})],
)
def test_reuse_logits_changes_no_sample_only_the_forward_passes(name, settings):
    setup = _setup(name)
    model, predictor, seeds = setup.model(), setup.predictor(), list(range(len(setup.prompts)))
    runs = [
        predictor.predict(
            model, setup.prompts, settings={**settings, "reuse_logits": reuse, "temperature": 1.0}, seeds=seeds
        )
        for reuse in (True, False)
    ]
    assert runs[0].sequences() == runs[1].sequences() and torch.equal(runs[0].steps, runs[1].steps)
    assert (runs[0].nfe <= runs[1].nfe).all() and torch.equal(runs[1].nfe, runs[1].steps)
    if name == "mdlm":  # ancestral steps that unmask nothing reuse p(x0)
        assert runs[0].nfe.sum() < runs[1].nfe.sum()


def test_an_ilm_run_saved_before_the_rename_still_loads():
    from xlm_ilm.config import ILMSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XLMDeprecationWarning)
        # a saved config holds every field, the unset one as null
        assert ILMSettings(max_length=None, max_new_tokens=4).max_new_tokens == 4
        assert ILMSettings(max_length=4, max_new_tokens=None).max_new_tokens == 4
        with pytest.raises(ValueError, match="disagree"):
            ILMSettings(max_length=4, max_new_tokens=5)


@pytest.mark.parametrize("name", FAMILIES)
def test_plugins_show_lists_shared_settings_alike(name, cli):
    shown = json.loads(cli("plugins", "show", name, "--json").out)
    fields = [f["field"] for f in shown["predictor_settings"]["fields"]]
    assert fields[:4] == SHARED[:4]
    shared = [f for f in fields if f in SHARED]
    assert shared == sorted(shared, key=SHARED.index), "shared settings in one order"
    assert fields[4] == "sampler" if "sampler" in fields else name == "arlm"
    assert ("kv_cache" in fields) == (name == "arlm")
    assert ("reuse_logits" in fields) == (name in ("mdlm", "mlm"))
