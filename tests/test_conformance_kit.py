"""The conformance kit itself: it passes a good family and each check catches the bug it is for.

The good family is the one ``xlm plugins new`` scaffolds. Each broken family
replaces one of its components with a wrapper that breaks one rule.
"""

from __future__ import annotations

import sys
from importlib import metadata

import pytest
import torch
from torch import nn

from xlm_core.components import Batch, LossOutput, ModelOutput
from xlm_core.errors import PluginError
from xlm_core.plugins import hookimpl
from xlm_core.testing import CHECK_NAMES, TINY_VOCAB, CheckResult, run_check, run_conformance

REF: dict[str, type] = {}  # the reference family's component classes, filled per test


@pytest.fixture(autouse=True)
def _reference(reference_family):
    REF.update(reference_family.resolve_all())
    yield
    REF.clear()


# -- broken components: each wraps the reference one and breaks one rule ------------------------


class _Wrapped:
    kind = ""

    def __init__(self, config, vocab, shape=None):  # loss: (config, vocab); the others add shape
        args = (config, vocab) if shape is None else (config, vocab, shape)
        self.inner = REF[self.kind](*args)


class ShortTargetsCollator(_Wrapped):
    kind = "collator"

    def __call__(self, examples, generator=None):
        b = self.inner(examples, generator)
        return Batch(b.input_ids, b.attention_mask, b.targets[:, :-1], b.extras)


class FloatMaskCollator(_Wrapped):
    kind = "collator"

    def __call__(self, examples, generator=None):
        b = self.inner(examples, generator)
        return Batch(b.input_ids, b.attention_mask.float(), b.targets, b.extras)


class OutOfVocabCollator(_Wrapped):
    kind = "collator"

    def __call__(self, examples, generator=None):
        b = self.inner(examples, generator)
        b.input_ids[0, -1] = TINY_VOCAB.size
        return b


class BadExtrasCollator(_Wrapped):
    kind = "collator"

    def __call__(self, examples, generator=None):
        b = self.inner(examples, generator)
        b.extras["noise"] = torch.zeros(b.size + 1)
        return b


class GlobalRNGCollator(_Wrapped):
    kind = "collator"

    def __call__(self, examples, generator=None):
        return self.inner(examples, None)  # ignores the generator: draws from the global RNG


class _WrappedModel(nn.Module):
    def __init__(self, config, vocab):
        super().__init__()
        self.inner = REF["model"](config, vocab)


class NarrowLogitsModel(_WrappedModel):
    def forward(self, input_ids, attention_mask=None):
        return ModelOutput(self.inner(input_ids, attention_mask).logits[..., :-1])


class NaNLogitsModel(_WrappedModel):
    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids, attention_mask).logits.clone()
        logits[0, 0, 0] = float("nan")
        return ModelOutput(logits)


class UnusedParameterModel(_WrappedModel):
    def __init__(self, config, vocab):
        super().__init__(config, vocab)
        self.forgotten = nn.Linear(4, 4)

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids, attention_mask)


class ZeroGradientModel(_WrappedModel):
    def __init__(self, config, vocab):
        super().__init__(config, vocab)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids, attention_mask).logits
        return ModelOutput(logits + 0.0 * self.scale)  # connected to the graph, but never learns


class BatchMeanModel(_WrappedModel):
    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids, attention_mask).logits
        return ModelOutput(
            logits + logits.mean(dim=0)
        )  # each row reads the others, as a batch norm


class UnsavedStateModel(_WrappedModel):
    def __init__(self, config, vocab):
        super().__init__(config, vocab)
        self.shift = torch.randn(vocab.size)  # a plain attribute: not in state_dict, lost on save

    def forward(self, input_ids, attention_mask=None):
        return ModelOutput(self.inner(input_ids, attention_mask).logits + self.shift)


class NaNLoss(_Wrapped):
    kind = "loss"
    nll_kind = "none"

    def __call__(self, model, batch):
        out = self.inner(model, batch)
        return LossOutput(out.loss * float("nan"), out.n_tokens, out.nll_sum, out.metrics)


class BoundWithoutNLLLoss(_Wrapped):
    kind = "loss"
    nll_kind = "bound"  # promises an NLL bound but never reports one

    def __call__(self, model, batch):
        return self.inner(model, batch)


class _WrappedPredictor(_Wrapped):
    kind = "predictor"

    def step_budget(self, settings):
        return self.inner.step_budget(settings)

    def predict(self, model, prompts, *, settings, seeds, record_steps=False):
        return self.inner.predict(
            model, prompts, settings=settings, seeds=seeds, record_steps=record_steps
        )


class OverBudgetPredictor(_WrappedPredictor):
    def step_budget(self, settings):
        return 1  # claims one step; the reference takes several


class MaskEmittingPredictor(_WrappedPredictor):
    def predict(self, model, prompts, **kwargs):
        pred = super().predict(model, prompts, **kwargs)
        pred.ids[:, 0] = TINY_VOCAB.mask_id
        pred.lengths.clamp_(min=1)
        return pred


class TooLongPredictor(_WrappedPredictor):
    def predict(self, model, prompts, **kwargs):
        pred = super().predict(model, prompts, **kwargs)
        pred.ids = torch.cat([pred.ids, torch.full((len(prompts), 1), 7)], dim=1)
        pred.lengths = torch.full_like(pred.lengths, pred.ids.shape[1])
        return pred


class SharedSeedPredictor(_WrappedPredictor):
    def predict(self, model, prompts, *, seeds, **kwargs):
        shared = [sum(seeds)] * len(seeds)  # repeatable, but a row's noise depends on its batch
        return super().predict(model, prompts, seeds=shared, **kwargs)


class GlobalRNGPredictor(_WrappedPredictor):
    def predict(self, model, prompts, *, seeds, **kwargs):
        fresh = torch.randint(0, 2**31, (len(seeds),)).tolist()  # ignores the caller's seeds
        return super().predict(model, prompts, seeds=fresh, **kwargs)


class FalselyLeftToRightPredictor(_WrappedPredictor):
    left_to_right = True  # a window decoder's tokens depend on the length budget


LOSS, ROUNDTRIP, BATCH = "loss_finite_and_grads", "checkpoint_roundtrip", "batch_invariance"
BROKEN = [
    # (components replaced, the check that must fail, words in its message, other checks it breaks)
    ({"collator": ShortTargetsCollator}, "collator", "targets has shape", {LOSS}),
    (
        {"collator": FloatMaskCollator},
        "collator",
        "attention_mask is torch.float32",
        {"model_shapes", LOSS, ROUNDTRIP},
    ),
    (
        {"collator": OutOfVocabCollator},
        "collator",
        "outside [0, 24)",
        {"model_shapes", LOSS, ROUNDTRIP},
    ),
    ({"collator": BadExtrasCollator}, "collator", "extras['noise']", set()),
    ({"model": NarrowLogitsModel}, "model_shapes", "expected (B, L, vocab.size)", set()),
    ({"model": NaNLogitsModel}, "model_shapes", "NaN", {ROUNDTRIP}),
    ({"loss": NaNLoss}, LOSS, "not finite", set()),
    ({"loss": BoundWithoutNLLLoss}, LOSS, "nll_sum is None", set()),
    ({"model": UnusedParameterModel}, LOSS, "no gradient reaches forgotten.weight", set()),
    ({"model": ZeroGradientModel}, LOSS, "scale stays exactly zero", set()),
    (
        {"predictor": OverBudgetPredictor},
        "predictor_terminates",
        "exceed step_budget(settings) = 1",
        set(),
    ),
    ({"predictor": MaskEmittingPredictor}, "predictor_terminates", "special tokens", set()),
    ({"predictor": TooLongPredictor}, "predictor_terminates", "exceed the length budget", set()),
    (
        {"predictor": FalselyLeftToRightPredictor},
        "predictor_terminates",
        "declares left_to_right = True",
        set(),
    ),
    ({"predictor": GlobalRNGPredictor}, "determinism", "same seeds differ", {ROUNDTRIP, BATCH}),
    ({"predictor": SharedSeedPredictor}, BATCH, "its result depends on the batch", set()),
    ({"model": BatchMeanModel}, BATCH, "in the batch but", set()),
    ({"collator": GlobalRNGCollator}, "determinism", "collator gives different", set()),
    ({"model": UnsavedStateModel}, ROUNDTRIP, "logits differ after a save/load round-trip", set()),
]


@pytest.fixture
def broken_family(registry, scaffolded, make_fake_plugin, fakes_module):
    """Register a copy of the reference family with some components replaced."""

    def build(replaced: dict[str, type], name: str = "broken"):
        paths = scaffolded.component_paths()
        paths.update({kind: fakes_module(cls) for kind, cls in replaced.items()})
        settings = scaffolded.plugin_module().xlm_family()
        plugin = make_fake_plugin(
            name, config=settings.config, settings=settings.predictor_settings, components=paths
        )
        record = registry.register(plugin, name=name)
        assert record.status == "ok", record.error
        return registry.get(name)

    return build


def test_the_scaffolded_family_passes_every_check(reference_family):
    results = run_conformance(reference_family)
    assert [r.name for r in results] == list(CHECK_NAMES)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    skipped = {r.name: r.message for r in results if r.message}
    assert skipped == {
        "entry_module_without_torch": "skipped: kitref was registered in-process, so no "
        "installed entry point names a module to import"
    }


@pytest.mark.parametrize(
    ("replaced", "check", "words", "also"),
    BROKEN,
    ids=[next(iter(b[0].values())).__name__ for b in BROKEN],
)
def test_each_check_catches_its_bug(broken_family, replaced, check, words, also):
    family = broken_family(replaced)
    with pytest.raises(AssertionError, match="broken " + check) as info:
        run_check(family, check)
    assert words in str(info.value)
    # Every other check passes, except those the same bug necessarily breaks too
    # (a batch the model cannot read fails the loss; NaN is never equal to itself).
    failed = {r.name for r in run_conformance(family) if not r.passed}
    assert failed == {check} | also


def test_checks_accept_a_family_name_and_overrides(reference_family):
    run_check("kitref", "predictor_terminates", settings_overrides={"steps": 2, "temperature": 0.0})
    run_check("kitref", "model_shapes", config_overrides={"d_model": 16, "n_heads": 4})


def test_an_invalid_tiny_config_fails_resolve_once_with_the_reason(reference_family):
    results = run_conformance(reference_family, config_overrides={"n_heads": 3})
    failed = [r for r in results if not r.passed]
    assert [r.name for r in failed] == ["resolve"]
    assert "the tiny config is invalid" in failed[0].message
    assert "must be divisible by n_heads" in failed[0].message
    # the component checks cannot run, so they are not reported at all
    assert [r.name for r in results] == ["presets", "entry_module_without_torch", "resolve"]
    with pytest.raises(AssertionError, match="kitref resolve: the tiny config is invalid"):
        run_check(reference_family, "collator", config_overrides={"n_heads": 3})


def test_a_component_that_cannot_be_imported_fails_resolve_once(registry, make_fake_plugin):
    registry.register(make_fake_plugin("ghost"), name="ghost")
    results = run_conformance("ghost")
    assert [(r.name, r.passed) for r in results] == [
        ("presets", True),
        ("entry_module_without_torch", True),
        ("resolve", False),
    ]
    assert results[-1].message.startswith(
        "cannot import model 'xlm_ghost_fake.model:FakeModel': ModuleNotFoundError"
    )
    assert registry.records()[0].status == "failed"  # and the registry now says so


def test_validate_prints_one_fail_resolve_line_for_a_bad_component_path(
    registry, make_fake_plugin, cli
):
    registry.register(make_fake_plugin("ghost"), name="ghost")
    result = cli("plugins", "validate", "ghost")
    assert result.code == 1
    failed = [line for line in result.out.splitlines() if line.startswith("  FAIL")]
    assert len(failed) == 1 and failed[0].startswith(
        "  FAIL  resolve: cannot import model 'xlm_ghost_fake.model:FakeModel'"
    ), result.out
    assert result.out.splitlines()[-1] == "FAILED (1 plugin): ghost/resolve"


def test_a_preset_that_does_not_validate_fails_the_plugin_at_load(
    registry, make_fake_plugin, scaffolded
):
    manifest = scaffolded.plugin_module().xlm_family()
    bad = {"tiny": {"model": {"d_model": 64}}, "fast": {"predictor": {"stepz": 2}}}
    plugin = make_fake_plugin(
        "badpreset",
        config=manifest.config,
        settings=manifest.predictor_settings,
        components=scaffolded.component_paths(),
        presets=bad,
    )
    record = registry.register(plugin, name="badpreset")
    assert record.status == "failed"
    assert "preset 'fast' section 'predictor': unknown key 'predictor.stepz'" in record.error
    assert "\n" not in record.error

    # A manifest made without validation (model_copy) still meets the kit's presets check.
    unchecked = make_fake_plugin(
        "unchecked",
        config=manifest.config,
        settings=manifest.predictor_settings,
        components=scaffolded.component_paths(),
    )

    @hookimpl
    def xlm_family():
        return manifest.model_copy(update={"name": "unchecked", "presets": bad})

    unchecked.xlm_family = xlm_family
    assert registry.register(unchecked, name="unchecked").status == "ok"
    with pytest.raises(AssertionError, match="preset 'fast' section 'predictor': .*stepz"):
        run_check("unchecked", "presets")


# -- the entry module imports without torch ----------------------------------------------------


@pytest.fixture
def installed(tmp_path, monkeypatch, registry, scaffolded):
    """``installed(first_lines)``: a copy of the reference family, ``kitcopy``, installed as the
    distribution xlm-kitcopy whose entry module starts with ``first_lines``; loaded as xlm does."""

    def install(first_lines: str = ""):
        (tmp_path / "xlm_kitcopy").mkdir()
        (tmp_path / "xlm_kitcopy" / "__init__.py").write_text("")
        (tmp_path / "xlm_kitcopy" / "plugin.py").write_text(first_lines + COPY_HOOKS)
        info = tmp_path / "xlm_kitcopy-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-kitcopy\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text("[xlm.plugins]\nkitcopy = xlm_kitcopy.plugin\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        (ep,) = metadata.entry_points(group="xlm.plugins", name="kitcopy")
        record = registry.register(ep.load, name="kitcopy", distribution=("xlm-kitcopy", "0.1.0"))
        assert record.status == "ok", record.error
        return registry.get("kitcopy")

    yield install
    for name in ("xlm_kitcopy.plugin", "xlm_kitcopy"):
        sys.modules.pop(name, None)


COPY_HOOKS = """
import xlm_kitref.plugin as kitref
from xlm_core.plugins import hookimpl
from xlm_kitref.plugin import xlm_collator, xlm_loss, xlm_model, xlm_predictor


@hookimpl
def xlm_family():
    return kitref.xlm_family().model_copy(update={"name": "kitcopy"})
"""


def test_an_entry_module_that_imports_torch_fails(installed):
    family = installed("import torch  # listing plugins now imports torch\n")
    with pytest.raises(AssertionError) as info:
        run_check(family, "entry_module_without_torch")
    message = str(info.value)
    assert message.startswith(
        "kitcopy entry_module_without_torch: importing the entry module xlm_kitcopy.plugin "
        "imports torch ("
    )
    assert "plugin.py:1)" in message  # where the import is
    failed = {r.name for r in run_conformance(family) if not r.passed}
    assert failed == {"entry_module_without_torch"}


def test_a_torch_import_caught_as_optional_still_fails(installed):
    family = installed("try:\n    import torch.nn\nexcept ImportError:\n    pass\n")
    with pytest.raises(AssertionError, match=r"imports torch \(.*plugin\.py:2\)"):
        run_check(family, "entry_module_without_torch")


def test_a_torch_free_entry_module_passes(installed):
    results = run_conformance(installed(), checks=["entry_module_without_torch"])
    assert results == [CheckResult("entry_module_without_torch", True)]


def test_unknown_names_are_errors(reference_family):
    with pytest.raises(ValueError, match="unknown check 'speed'"):
        run_check(reference_family, "speed")
    with pytest.raises(PluginError, match="unknown plugin 'nope'"):
        run_check("nope", "collator")


def test_the_kit_leaves_the_callers_rng_and_threads_alone(reference_family):
    torch.manual_seed(123)
    expected = torch.rand(3)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    run_check(reference_family, "determinism")
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
