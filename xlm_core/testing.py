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
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from typing import Any, TypeVar

import attrs
import pydantic
import torch
from torch import Tensor, nn

from xlm_core.checkpoint import load_weights, save_weights
from xlm_core.components import (
    IGNORE_INDEX,
    Batch,
    DataShape,
    Example,
    LossOutput,
    ModelOutput,
    Prediction,
    Vocab,
)
from xlm_core.config import EvalConfig, TaskConfig, TrainingConfig
from xlm_core.errors import PluginError
from xlm_core.plugins.registry import (
    ENTRY_POINT_GROUP,
    Family,
    describe_exception,
    get_registry,
)

CHECK_NAMES: tuple[str, ...] = (
    "presets",
    "entry_module_without_torch",
    "resolve",
    "collator",
    "model_shapes",
    "loss_finite_and_grads",
    "predictor_terminates",
    "determinism",
    "batch_invariance",
    "checkpoint_roundtrip",
)

#: The backbone every check builds: small enough that the whole kit takes about a second on CPU.
TINY_BACKBONE: dict[str, Any] = {"d_model": 32, "n_layers": 2, "n_heads": 2}
TINY_VOCAB = Vocab(size=24, pad_id=0, mask_id=1, bos_id=2, eos_id=3, cls_id=4)
TINY_SHAPE = DataShape(prompt_length=6, target_length=8)
PREDICT_SEEDS = (11, 12, 13, 14)
_T = TypeVar("_T")


@attrs.frozen(slots=True)
class CheckResult:
    """The outcome of one check; ``message`` says why it failed, or why a passed check was skipped."""

    name: str
    passed: bool
    message: str = ""


def tiny_examples(
    vocab: Vocab = TINY_VOCAB, shape: DataShape = TINY_SHAPE, seed: int = 0
) -> list[Example]:
    """Four examples whose (prompt, target) lengths cover the edges: empty prompt, full prompt,
    a one-token target and a full-length target."""
    rng = random.Random(seed)
    content = [i for i in range(vocab.size) if i not in vocab.special_ids]
    lengths = [
        (0, shape.target_length),
        (shape.prompt_length, max(1, shape.target_length // 2 - 1)),
        (shape.prompt_length // 2, 1),
        (max(1, shape.prompt_length // 3), shape.target_length - 3),
    ]
    return [
        Example(
            prompt_ids=tuple(rng.choice(content) for _ in range(p)),
            target_ids=tuple(rng.choice(content) for _ in range(t)),
        )
        for p, t in lengths
    ]


@attrs.define
class TinySetup:
    """A family's components, configs and data at the kit's tiny size."""

    family: Family
    config: Any
    settings: Any
    vocab: Vocab = TINY_VOCAB
    shape: DataShape = TINY_SHAPE
    examples: list[Example] = attrs.field(factory=tiny_examples)

    @classmethod
    def build(
        cls,
        family: Family,
        *,
        config_overrides: Mapping[str, Any] | None = None,
        settings_overrides: Mapping[str, Any] | None = None,
    ) -> TinySetup:
        tiny = family.manifest.presets.get("tiny", {})
        model_fields = {**tiny.get("model", {}), **TINY_BACKBONE, **(config_overrides or {})}
        settings_fields = {**tiny.get("predictor", {}), **(settings_overrides or {})}
        try:
            config = family.make_config(**model_fields)
            settings = family.manifest.predictor_settings(**settings_fields)
        except pydantic.ValidationError as exc:
            raise AssertionError(f"the tiny config is invalid: {describe_exception(exc)}") from exc
        family.resolve_all()  # a PluginError here names the component that cannot be used
        return cls(family, config, settings)

    def component(self, kind: str) -> Any:
        return self.family.component(kind)  # type: ignore[arg-type]

    def model(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        model = self.component("model")(self.config, self.vocab)
        _expect(
            isinstance(model, nn.Module), f"the model is {type(model).__name__}, not an nn.Module"
        )
        return model

    def collator(self) -> Any:
        return self.component("collator")(self.config, self.vocab, self.shape)

    def loss(self) -> Any:
        return self.component("loss")(self.config, self.vocab)

    def predictor(self) -> Any:
        return self.component("predictor")(self.config, self.vocab, self.shape)

    def batch(self, seed: int = 0) -> Batch:
        return self.collator()(self.examples, generator=torch.Generator().manual_seed(seed))

    @property
    def prompts(self) -> list[list[int]]:
        return [list(e.prompt_ids) for e in self.examples]

    def predict(
        self,
        model: nn.Module,
        *,
        settings: Any = None,
        record_steps: bool = False,
        rows: Sequence[int] | None = None,
    ) -> Prediction:
        """Decode the examples' prompts (only ``rows`` of them, if given), each with its own seed."""
        rows = range(len(self.examples)) if rows is None else rows
        model.eval()
        with torch.no_grad():
            return self.predictor().predict(
                model,
                [self.prompts[i] for i in rows],
                settings=self.settings if settings is None else settings,
                seeds=[PREDICT_SEEDS[i] for i in rows],
                record_steps=record_steps,
            )


# -- the checks -----------------------------------------------------------------------------


def check_presets(family: Family) -> None:
    """Every named preset validates against the family's config classes and the run config."""
    manifest = family.manifest
    sections: dict[str, type[pydantic.BaseModel]] = {
        "model": manifest.config,
        "predictor": manifest.predictor_settings,
        "training": TrainingConfig,
        "task": TaskConfig,
        "eval": EvalConfig,
    }
    for preset, values in manifest.presets.items():
        _expect(
            isinstance(values, Mapping),
            f"preset {preset!r} is {type(values).__name__}, expected a dict",
        )
        for section, fields in values.items():
            _expect(
                section in sections,
                f"preset {preset!r} sets unknown section {section!r}; expected one of {', '.join(sections)}",
            )
            try:
                sections[section](**fields)
            except (pydantic.ValidationError, TypeError) as exc:
                raise AssertionError(
                    f"preset {preset!r} section {section!r}: {describe_exception(exc)}"
                ) from exc


def check_entry_module_without_torch(family: Family) -> str:
    """The entry module imports in a fresh interpreter where torch and lightning cannot be imported.

    xlm imports it to list plugins and show configs, which must stay fast. Returns
    why the check was skipped, or "" when it ran.
    """
    module = entry_module(family)
    if module is None:
        return (
            f"skipped: {family.name} was registered in-process, so no installed entry point "
            "names a module to import"
        )
    probe = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_TORCH, module, json.dumps(sys.path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = probe.stdout.strip() or probe.stderr.strip()[-500:]
    _expect(
        probe.returncode != _HEAVY_IMPORTED,
        f"importing the entry module {module} imports {said}; the entry module, its package's "
        "__init__ and its config module must not import torch or lightning (xlm imports them "
        "to list plugins): import torch in the component modules only",
    )
    _expect(
        probe.returncode == 0,
        f"the entry module {module} does not import in a fresh interpreter: {said}",
    )
    return ""


def entry_module(family: Family) -> str | None:
    """The module the family's entry point names, from the installed metadata; None for a family
    registered in-process (no entry point of its distribution is installed)."""
    record = family.record
    if record.distribution is None:
        return None
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name=record.name):
        dist = getattr(ep, "dist", None)
        if dist is not None and dist.metadata["Name"] == record.distribution:
            return ep.module
    return None


_HEAVY_IMPORTED = 3
# Run as `python -c` with the module name and the caller's sys.path (so it finds what the caller
# finds). A refused import is recorded even when the module catches the ImportError: with torch
# installed, that import would still run every time plugins are listed.
_IMPORT_WITHOUT_TORCH = """
import importlib, json, sys, traceback

class Refuse:
    first = None

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in ("torch", "lightning", "pytorch_lightning"):
            return None
        if Refuse.first is None:
            frames = [f for f in traceback.extract_stack() if not f.filename.startswith("<")]
            where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
            Refuse.first = name + where
        raise ModuleNotFoundError(f"No module named {name!r} (refused by xlm's conformance kit)")

sys.path[:] = json.loads(sys.argv[2])
sys.meta_path.insert(0, Refuse())
try:
    importlib.import_module(sys.argv[1])
    error = None
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"
if Refuse.first is not None:
    print(Refuse.first)
    sys.exit(3)
if error is not None:
    print(error)
    sys.exit(1)
"""


def check_collator(setup: TinySetup) -> None:
    """The batch contract: shapes, dtypes, id ranges and per-example extras."""
    batch = setup.batch()
    _check_batch(batch, setup.vocab, len(setup.examples))


def check_model_shapes(setup: TinySetup) -> None:
    """``model(input_ids, attention_mask)`` gives finite logits ``(B, L, vocab.size)``."""
    batch = setup.batch()
    model = setup.model()
    model.eval()
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask)
    _check_model_output(out, batch, setup.vocab)


def check_loss_finite_and_grads(setup: TinySetup) -> None:
    """A finite scalar loss, a consistent NLL, and a gradient for every trainable parameter.

    Some parameters legitimately get an exactly-zero gradient at initialisation
    (behind a zero-initialised adaLN gate, say); those must get a non-zero one after
    one small optimiser step. A parameter with no gradient at all is never used.
    """
    model, loss_fn = setup.model(), setup.loss()
    model.train()
    out = _loss_and_backward(loss_fn, model, setup.batch(seed=0), type(loss_fn))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    _expect(bool(params), "the model has no trainable parameters")
    unused = [name for name, p in params.items() if p.grad is None]
    _expect(
        not unused,
        f"no gradient reaches {_names(unused)}: these parameters are not used by the loss",
    )
    bad = [name for name, p in params.items() if not torch.isfinite(p.grad).all()]
    _expect(not bad, f"non-finite gradient in {_names(bad)} (loss {out.loss.item():.4g})")
    zero = [name for name, p in params.items() if not p.grad.any()]
    if zero:
        with torch.no_grad():
            for p in params.values():
                p.sub_(1e-2 * torch.sign(p.grad))
                p.grad = None
        _loss_and_backward(loss_fn, model, setup.batch(seed=1), type(loss_fn))
        still = [name for name in zero if params[name].grad is None or not params[name].grad.any()]
        _expect(
            not still,
            f"the gradient of {_names(still)} stays exactly zero, even after an optimiser step",
        )


def check_predictor_terminates(setup: TinySetup) -> None:
    """Within the step budget, within the length budget, no special tokens, PAD after the end."""
    model = setup.model()
    pred = setup.predict(model, record_steps=True)
    _check_prediction(pred, setup, setup.settings, history=True)
    # A smaller length budget must be honoured too (unless the caller fixed one).
    if setup.settings.max_new_tokens is None:
        short = setup.settings.model_copy(update={"max_new_tokens": 3})
        _check_prediction(setup.predict(model, settings=short), setup, short, history=False)


def check_determinism(setup: TinySetup) -> None:
    """Same seeds give the same batch and the same prediction, whatever the global RNG state."""
    torch.manual_seed(1234)
    first = setup.batch(seed=5)
    torch.manual_seed(4321)
    second = setup.batch(seed=5)
    for field in ("input_ids", "attention_mask", "targets"):
        _expect(
            torch.equal(getattr(first, field), getattr(second, field)),
            f"the collator gives different {field} for the same generator seed: it must draw its "
            "randomness from the `generator` argument, not the global RNG",
        )
    model = setup.model()
    torch.manual_seed(1234)
    a = setup.predict(model)
    torch.manual_seed(4321)
    b = setup.predict(model)
    _expect(
        _same_prediction(a, b),
        "two predictions with the same seeds differ: draw all randomness from per-example "
        "generators (xlm_core.nn.sampling.make_generators(seeds)), never the global RNG",
    )
    c = setup.predict(model, record_steps=True)
    _expect(
        _same_prediction(a, c),
        "record_steps=True changes the prediction; recording must only observe",
    )


def check_batch_invariance(setup: TinySetup) -> None:
    """Each row's sample is the same decoded alone as in the batch, where the prompts' different
    lengths force padding: a row's computation must not read the other rows or the batch's shape."""
    model = setup.model()
    together = setup.predict(model).sequences()
    for row in range(len(setup.examples)):
        alone = setup.predict(model, rows=[row]).sequences()[0]
        _expect(
            alone == together[row],
            f"row {row} (a {len(setup.prompts[row])}-token prompt) samples {together[row]} in the "
            f"batch but {alone} alone, with the same seed: its result depends on the batch. Pad "
            "prompts to a width that does not depend on the batch (xlm_core.nn.window: "
            "prompt_width, left_pad), keep padding out of attention, and draw each row's noise "
            "from its own generator",
        )


def check_checkpoint_roundtrip(setup: TinySetup) -> None:
    """save_weights then load_weights into a freshly built model: identical logits and predictions."""
    batch = setup.batch()
    original = setup.model(seed=0)
    original.eval()
    with tempfile.TemporaryDirectory(prefix="xlm-kit-") as tmp:
        save_weights(original, tmp)
        reloaded = setup.model(seed=1)  # another init, so a weight that is not saved shows up
        load_weights(reloaded, tmp)
    reloaded.eval()
    with torch.no_grad():
        a = original(batch.input_ids, batch.attention_mask).logits
        b = reloaded(batch.input_ids, batch.attention_mask).logits
    _expect(
        torch.equal(a, b),
        f"logits differ after a save/load round-trip (max abs diff {(a - b).abs().max().item():.3g}): "
        "some state that affects the output is not a parameter or persistent buffer",
    )
    _expect(
        _same_prediction(setup.predict(original), setup.predict(reloaded)),
        "predictions differ after a save/load round-trip",
    )


# Checks of the manifest and the package: they run even when a component cannot be resolved.
_FAMILY_CHECKS: dict[str, Callable[[Family], str | None]] = {
    "presets": check_presets,
    "entry_module_without_torch": check_entry_module_without_torch,
}
# Checks of the components, at the tiny size; they need "resolve" to have passed.
_SETUP_CHECKS: dict[str, Callable[[TinySetup], None]] = {
    "collator": check_collator,
    "model_shapes": check_model_shapes,
    "loss_finite_and_grads": check_loss_finite_and_grads,
    "predictor_terminates": check_predictor_terminates,
    "determinism": check_determinism,
    "batch_invariance": check_batch_invariance,
    "checkpoint_roundtrip": check_checkpoint_roundtrip,
}
assert (*_FAMILY_CHECKS, "resolve", *_SETUP_CHECKS) == CHECK_NAMES


# -- entry points -----------------------------------------------------------------------------


def run_check(
    family_or_name: Family | str,
    check: str,
    *,
    config_overrides: Mapping[str, Any] | None = None,
    settings_overrides: Mapping[str, Any] | None = None,
) -> None:
    """Run one check on a family (a :class:`Family` or an installed plugin's name).

    Raises ``AssertionError`` naming the check and the problem when it fails; an
    exception raised inside the plugin is wrapped the same way, chained to the original.
    A component check first runs ``resolve`` and fails as ``resolve`` when that does.
    """
    if check not in CHECK_NAMES:
        raise ValueError(f"unknown check {check!r}; expected one of {', '.join(CHECK_NAMES)}")
    family = _family(family_or_name)
    if check in _FAMILY_CHECKS:
        _run(family, check, partial(_FAMILY_CHECKS[check], family))
        return
    setup = _run(family, "resolve", partial(_resolve, family, config_overrides, settings_overrides))
    if check != "resolve":
        _run(family, check, partial(_SETUP_CHECKS[check], setup))


def run_conformance(
    family_or_name: Family | str,
    *,
    config_overrides: Mapping[str, Any] | None = None,
    settings_overrides: Mapping[str, Any] | None = None,
    checks: Sequence[str] = CHECK_NAMES,
) -> list[CheckResult]:
    """Run every check (or the named ones) and collect the results instead of raising.

    When ``resolve`` fails, the component checks cannot run: the list holds the
    ``resolve`` failure once and leaves them out.
    """
    unknown = [c for c in checks if c not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; expected some of {', '.join(CHECK_NAMES)}")
    family = _family(family_or_name)
    results: list[CheckResult] = []
    setup: TinySetup | None = None
    unresolved = False
    for check in checks:
        if check in _FAMILY_CHECKS:
            results.append(_outcome(family, check, partial(_FAMILY_CHECKS[check], family)))
            continue
        if unresolved:
            continue
        if setup is None:
            resolve = partial(_resolve, family, config_overrides, settings_overrides)
            try:
                setup = _run(family, "resolve", resolve, prefix=False)
            except AssertionError as exc:
                unresolved = True
                results.append(CheckResult("resolve", False, _one_line(exc)))
                continue
            if "resolve" in checks:
                results.append(CheckResult("resolve", True))
        if check != "resolve":
            results.append(_outcome(family, check, partial(_SETUP_CHECKS[check], setup)))
    return results


def _family(family_or_name: Family | str) -> Family:
    return (
        family_or_name if isinstance(family_or_name, Family) else get_registry().get(family_or_name)
    )


def _resolve(family: Family, config_overrides: Any, settings_overrides: Any) -> TinySetup:
    """The ``resolve`` check: the four components import and meet their class contracts, and the
    tiny config and settings validate."""
    try:
        return TinySetup.build(
            family, config_overrides=config_overrides, settings_overrides=settings_overrides
        )
    except PluginError as exc:
        # the message starts with the plugin's origin, which every report already names
        raise AssertionError(str(exc).removeprefix(f"{family.record.origin}: ")) from exc


def _outcome(family: Family, check: str, call: Callable[[], str | None]) -> CheckResult:
    try:
        skipped = _run(family, check, call, prefix=False)
    except AssertionError as exc:
        return CheckResult(check, False, _one_line(exc))
    return CheckResult(check, True, skipped or "")


def _run(family: Family, check: str, call: Callable[[], _T], *, prefix: bool = True) -> _T:
    where = f"{family.name} {check}: " if prefix else ""
    with _isolated_rng(), _one_thread():
        try:
            return call()
        except AssertionError as exc:
            raise AssertionError(f"{where}{exc}") from exc
        except Exception as exc:  # a crash inside the plugin is a failed check, not a kit error
            raise AssertionError(f"{where}raised {describe_exception(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tensors this small gain nothing from threads, and on a busy machine the thread pool's
    hand-offs make the kit some 20x slower; the caller's setting comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _isolated_rng() -> Iterator[None]:
    """Checks seed torch and Python's RNGs; the caller's RNG state comes back untouched."""
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)


# -- contract assertions ----------------------------------------------------------------------


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _names(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_batch(batch: Any, vocab: Vocab, n_examples: int) -> None:
    _expect(
        isinstance(batch, Batch), f"the collator returned {type(batch).__name__}, expected Batch"
    )
    for field in ("input_ids", "attention_mask", "targets"):
        _expect(isinstance(getattr(batch, field), Tensor), f"Batch.{field} is not a tensor")
    ids, mask, targets = batch.input_ids, batch.attention_mask, batch.targets
    _expect(
        ids.dim() == 2 and ids.shape[0] == n_examples,
        f"input_ids has shape {tuple(ids.shape)}, expected ({n_examples}, L) for {n_examples} examples",
    )
    _expect(ids.dtype == torch.long, f"input_ids is {ids.dtype}, expected torch.long")
    _expect(mask.dtype == torch.bool, f"attention_mask is {mask.dtype}, expected torch.bool")
    _expect(
        mask.shape == ids.shape,
        f"attention_mask has shape {tuple(mask.shape)}, expected input_ids' {tuple(ids.shape)}",
    )
    _expect(
        targets.shape == ids.shape,
        f"targets has shape {tuple(targets.shape)}, expected input_ids' {tuple(ids.shape)}",
    )
    _expect(targets.dtype == torch.long, f"targets is {targets.dtype}, expected torch.long")
    _expect(
        bool(mask.any(dim=1).all()),
        "a row of attention_mask is all False: the model would see nothing",
    )
    _expect(
        bool(((ids >= 0) & (ids < vocab.size)).all()),
        f"input_ids holds ids outside [0, {vocab.size}): {_outside(ids, vocab.size)}",
    )
    in_range = (targets >= 0) & (targets < vocab.size)
    _expect(
        bool((in_range | (targets == IGNORE_INDEX)).all()),
        f"targets holds ids outside [0, {vocab.size}) that are not IGNORE_INDEX ({IGNORE_INDEX}): "
        f"{_outside(targets[targets != IGNORE_INDEX], vocab.size)}",
    )
    _expect(isinstance(batch.extras, Mapping), "Batch.extras must be a dict of tensors")
    for key, value in batch.extras.items():
        _expect(
            isinstance(value, Tensor),
            f"Batch.extras[{key!r}] is {type(value).__name__}, not a tensor",
        )
        _expect(
            value.dim() >= 1 and value.shape[0] == n_examples,
            f"Batch.extras[{key!r}] has shape {tuple(value.shape)}; its first dimension must be B={n_examples}",
        )


def _outside(t: Tensor, size: int) -> list[int]:
    return sorted({int(v) for v in t.flatten().tolist() if not 0 <= v < size})[:5]


def _check_model_output(out: Any, batch: Batch, vocab: Vocab) -> None:
    _expect(
        isinstance(out, ModelOutput),
        f"the model returned {type(out).__name__}, expected ModelOutput",
    )
    b, length = batch.input_ids.shape
    _expect(
        tuple(out.logits.shape) == (b, length, vocab.size),
        f"logits have shape {tuple(out.logits.shape)}, expected (B, L, vocab.size) = ({b}, {length}, {vocab.size})",
    )
    logits = out.logits.float()
    # -inf is how a family rules a token out (MDLM never predicts MASK); NaN and +inf are bugs.
    _expect(not bool(torch.isnan(logits).any()), "logits contain NaN")
    _expect(not bool(torch.isposinf(logits).any()), "logits contain +inf")
    _expect(
        bool(torch.isfinite(logits).any(dim=-1).all()), "a position has no finite logit (all -inf)"
    )
    for key, value in out.extras.items():
        _expect(isinstance(value, Tensor), f"ModelOutput.extras[{key!r}] is not a tensor")
        _expect(
            value.dim() >= 1 and value.shape[0] == b,
            f"ModelOutput.extras[{key!r}] has shape {tuple(value.shape)}; its first dimension must be B={b}",
        )


def _loss_and_backward(loss_fn: Any, model: nn.Module, batch: Batch, loss_cls: type) -> LossOutput:
    model.zero_grad(set_to_none=True)
    out = loss_fn(model, batch)
    _expect(
        isinstance(out, LossOutput), f"the loss returned {type(out).__name__}, expected LossOutput"
    )
    loss = out.loss
    _expect(
        isinstance(loss, Tensor) and loss.dim() == 0,
        "LossOutput.loss must be a scalar (0-d) tensor",
    )
    _expect(bool(torch.isfinite(loss)), f"the loss is not finite ({loss.item()})")
    _expect(loss.requires_grad, "the loss does not require grad: it is detached from the model")
    n_tokens = float(out.n_tokens)
    _expect(n_tokens > 0, f"n_tokens is {n_tokens}; the batch must have target tokens")
    kind = loss_cls.nll_kind
    if kind == "none":
        _expect(
            out.nll_sum is None, 'nll_kind is "none" but nll_sum is set; declare "exact" or "bound"'
        )
    else:
        _expect(out.nll_sum is not None, f'nll_kind is "{kind}" but nll_sum is None')
        nll = float(out.nll_sum)
        _expect(
            math.isfinite(nll) and nll >= 0,
            f"nll_sum is {nll}; expected a finite, non-negative sum",
        )
    for key, value in out.metrics.items():
        _expect(
            isinstance(value, Tensor) and value.numel() == 1 and bool(torch.isfinite(value).all()),
            f"metrics[{key!r}] must be a finite scalar tensor, got {value!r}",
        )
    loss.backward()
    return out


def _check_prediction(pred: Any, setup: TinySetup, settings: Any, *, history: bool) -> None:
    vocab, n = setup.vocab, len(setup.examples)
    _expect(
        isinstance(pred, Prediction), f"predict returned {type(pred).__name__}, expected Prediction"
    )
    ids, lengths, steps, nfe = pred.ids, pred.lengths, pred.steps, pred.nfe
    _expect(
        ids.dim() == 2 and ids.shape[0] == n,
        f"ids have shape {tuple(ids.shape)}, expected ({n}, L)",
    )
    for field in ("lengths", "steps", "nfe"):
        t = getattr(pred, field)
        _expect(
            tuple(t.shape) == (n,),
            f"Prediction.{field} has shape {tuple(t.shape)}, expected ({n},)",
        )
        _expect(
            not t.is_floating_point(),
            f"Prediction.{field} is {t.dtype}, expected an integer tensor",
        )
    budget = setup.predictor().step_budget(settings)
    _expect(
        isinstance(budget, int) and budget >= 1,
        f"step_budget returned {budget!r}, expected an int >= 1",
    )
    _expect(
        bool((steps <= budget).all()) and bool((steps >= 0).all()),
        f"steps {steps.tolist()} exceed step_budget(settings) = {budget}",
    )
    _expect(
        bool((nfe >= 1).all()), f"nfe {nfe.tolist()}: every row takes at least one forward pass"
    )
    max_len = settings.max_new_tokens or setup.shape.target_length
    _expect(
        bool((lengths >= 0).all()) and bool((lengths <= max_len).all()),
        f"lengths {lengths.tolist()} exceed the length budget {max_len} "
        "(settings.max_new_tokens, else shape.target_length)",
    )
    _expect(
        ids.shape[1] >= int(lengths.max()),
        f"ids have {ids.shape[1]} columns but lengths reach {int(lengths.max())}",
    )
    inside = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    special = torch.zeros_like(ids, dtype=torch.bool)
    for token in vocab.special_ids:
        special |= ids == token
    _expect(
        not bool((special & inside).any()),
        f"special tokens (PAD/MASK/BOS/EOS/CLS = {list(vocab.special_ids)}) inside the generated text: "
        f"{pred.sequences()}",
    )
    _expect(
        bool(((ids >= 0) & (ids < vocab.size)).all()),
        f"ids outside [0, {vocab.size}): {_outside(ids, vocab.size)}",
    )
    _expect(bool((ids[~inside] == vocab.pad_id).all()), "ids after lengths[b] must be PAD")
    if history:
        _expect(
            pred.history is not None and len(pred.history) == n,
            "record_steps=True must fill history[b] for every row",
        )
        for b, rows in enumerate(pred.history):
            _expect(
                len(rows) == int(steps[b]),
                f"history[{b}] has {len(rows)} entries but the row took {int(steps[b])} steps (one entry per step)",
            )


def _same_prediction(a: Prediction, b: Prediction) -> bool:
    return all(
        torch.equal(getattr(a, f), getattr(b, f)) for f in ("ids", "lengths", "steps", "nfe")
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
    "tiny_examples",
]
