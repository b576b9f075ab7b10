"""Shared fixtures: plugins registered in-process, the scaffolded reference family, and the CLI runner."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

import xlm_core
from xlm_core.plugins import (
    STANDARD_PRESETS,
    ComponentRef,
    FamilyConfig,
    FamilyManifest,
    PredictorSettings,
    Registry,
    hookimpl,
    reset_registry,
)

# The tests use tiny tensors: threads only add hand-off overhead, which on a shared
# 2-core machine makes them many times slower.
torch.set_num_threads(1)

_SWITCHES = ("XLM_STRICT_PLUGINS", "XLM_DISABLE_PLUGINS", "XLM_DEBUG")


@pytest.fixture(autouse=True)
def _hermetic_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from xlm's defaults whatever the caller exported (CI runs with XLM_STRICT_PLUGINS=1);
    a test that wants a switch sets it itself."""
    for name in _SWITCHES:
        monkeypatch.delenv(name, raising=False)

API_VERSION = ".".join(xlm_core.PLUGIN_API_VERSION.split(".")[:2])
REFERENCE_NAME = "kitref"  # the scaffolded family the kit and CLI tests use as a known-good plugin
FAKES_MODULE = (
    "xlm_test_fakes"  # where in-process fake components live, so ComponentRef can import them
)


def fake_plugin(
    name: str = "fake",
    *,
    api_version: str = API_VERSION,
    config: Any = FamilyConfig,
    settings: Any = PredictorSettings,
    presets: dict[str, Any] | None = None,
    components: dict[str, str] | None = None,
    omit: tuple[str, ...] = (),
    family_error: Exception | None = None,
    manifest_name: str | None = None,
) -> types.SimpleNamespace:
    """An object carrying hookimpls, as an entry-point module would.

    ``components`` maps a kind to an import path (default: paths that need not
    exist, since components resolve only on first use); ``omit`` leaves hooks out.
    """
    paths = {
        kind: f"xlm_{name}_fake.{kind}:Fake{kind.capitalize()}"
        for kind in ("model", "loss", "predictor", "collator")
    }
    paths.update(components or {})
    plugin = types.SimpleNamespace()

    def xlm_family() -> FamilyManifest:
        if family_error is not None:
            raise family_error
        return FamilyManifest(
            name=manifest_name or name,
            api_version=api_version,
            description=f"fake family {name}",
            config=config,
            predictor_settings=settings,
            presets=dict(STANDARD_PRESETS) if presets is None else presets,
        )

    hooks: dict[str, Callable[[], Any]] = {"xlm_family": xlm_family}
    for kind, path in paths.items():
        hooks[f"xlm_{kind}"] = lambda path=path: ComponentRef(path=path)
    for hook, function in hooks.items():
        if hook.removeprefix("xlm_") not in omit:
            function.__name__ = hook
            setattr(plugin, hook, hookimpl(function))
    return plugin


@pytest.fixture
def fakes_module(monkeypatch: pytest.MonkeyPatch) -> Callable[[type], str]:
    """``ref(cls)`` puts ``cls`` in an importable module and returns its import path."""
    module = types.ModuleType(FAKES_MODULE)
    monkeypatch.setitem(sys.modules, FAKES_MODULE, module)

    def ref(cls: type) -> str:
        setattr(module, cls.__name__, cls)
        return f"{FAKES_MODULE}:{cls.__name__}"

    return ref


@attrs.frozen
class Scaffolded:
    root: Path  # the generated xlm-kitref folder
    package: str  # xlm_kitref

    def plugin_module(self) -> types.ModuleType:
        return importlib.import_module(f"{self.package}.plugin")

    def component_paths(self) -> dict[str, str]:
        return {kind: ref.path for kind, ref in _call_component_hooks(self.plugin_module()).items()}


def _call_component_hooks(module: types.ModuleType) -> dict[str, ComponentRef]:
    return {
        kind: getattr(module, f"xlm_{kind}")()
        for kind in ("model", "loss", "predictor", "collator")
    }


@pytest.fixture(scope="session")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaffolded]:
    """The family ``xlm plugins new kitref`` generates, importable in-process (no install)."""
    from xlm_core.scaffold import create_plugin

    root = create_plugin(REFERENCE_NAME, tmp_path_factory.mktemp("scaffold"))
    sys.path.insert(0, str(root))
    try:
        yield Scaffolded(root=root, package=f"xlm_{REFERENCE_NAME}")
    finally:
        sys.path.remove(str(root))


@pytest.fixture
def registry() -> Iterator[Registry]:
    """An empty registry installed as the process-wide one (what the CLI sees), reset afterwards."""
    reg = Registry(discover=False, disabled=())
    reset_registry(reg)
    yield reg
    reset_registry(None)


@pytest.fixture
def reference_family(scaffolded: Scaffolded, registry: Registry):
    """The scaffolded family registered in the process-wide registry, as a ``Family``."""
    record = registry.register(
        scaffolded.plugin_module(), name=REFERENCE_NAME, distribution=("xlm-kitref", "0.1.0")
    )
    assert record.status == "ok", record.error
    return registry.get(REFERENCE_NAME)


@attrs.frozen
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``xlm ARGS...`` in-process (against the registry fixture, if any) and capture everything."""
    from xlm_core.cli.main import run

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            run(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def make_fake_plugin() -> Callable[..., types.SimpleNamespace]:
    """:func:`fake_plugin` (test modules cannot import conftest under --import-mode=importlib)."""
    return fake_plugin


@pytest.fixture
def clean_env() -> Callable[..., dict[str, str]]:
    """``clean_env(**overrides)``: this environment without any XLM_* switch, plus ``overrides``."""

    def build(**overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XLM_")}
        env.update(overrides)
        return env

    return build


@pytest.fixture(scope="session")
def untrained_pipeline() -> Callable[..., Any]:
    """``make(name, run_config)``: a :class:`~xlm_core.pipeline.Pipeline` on CPU holding a freshly
    initialised (``torch.manual_seed(0)``) model of family ``name`` and the task of ``run_config``."""
    from xlm_core.data.tasks import build_task
    from xlm_core.pipeline import Pipeline
    from xlm_core.plugins import get_registry

    def make(name: str, run_config: Any) -> Pipeline:
        task = build_task(run_config.task)
        family = get_registry().get(name)
        torch.manual_seed(0)
        return Pipeline(
            family=family,
            run_config=run_config,
            model=family.component("model")(run_config.model, task.tokenizer.vocab),
            tokenizer=task.tokenizer,
            task_kind=task.kind,
            shape=task.shape,
            device="cpu",
            task=task,
        )

    return make
