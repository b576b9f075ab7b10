"""The kit's entry points: run one check (raising) or all of them (collecting results).

Each check runs with the caller's RNG state saved and restored and on one thread;
a crash inside the plugin is a failed check, not an error of the kit.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import attrs
import torch

from xlm_core.errors import PluginError
from xlm_core.plugins.isolation import describe_exception
from xlm_core.plugins.registry import Family, get_registry
from xlm_core.testing.checks import (
    check_batch_invariance,
    check_checkpoint_roundtrip,
    check_collator,
    check_determinism,
    check_loss_finite_and_grads,
    check_model_shapes,
    check_predictor_terminates,
)
from xlm_core.testing.family_checks import check_entry_module_without_torch, check_presets
from xlm_core.testing.tiny import TinySetup

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
_T = TypeVar("_T")


@attrs.frozen(slots=True)
class CheckResult:
    """The outcome of one check; ``message`` says why it failed, or why a passed check was skipped."""

    name: str
    passed: bool
    message: str = ""


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
