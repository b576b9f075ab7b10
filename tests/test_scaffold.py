"""``xlm plugins new``: the generated package is complete, torch-free where it must be, and works."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import xlm_core
from xlm_core.errors import XLMUserError
from xlm_core.plugins import Registry, reset_registry
from xlm_core.scaffold import check_name, create_plugin, template_values
from xlm_core.testing import CHECK_NAMES, CheckResult, run_conformance

EXPECTED_FILES = [
    "README.md",
    "pyproject.toml",
    "tests/conftest.py",
    "tests/test_conformance.py",
    "tests/test_family.py",
    "xlm_my_fam/__init__.py",
    "xlm_my_fam/collator.py",
    "xlm_my_fam/config.py",
    "xlm_my_fam/loss.py",
    "xlm_my_fam/model.py",
    "xlm_my_fam/plugin.py",
    "xlm_my_fam/predictor.py",
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return create_plugin("my_fam", tmp_path_factory.mktemp("new"))


def test_the_package_has_every_file_and_no_placeholder_left(generated):
    files = sorted(str(p.relative_to(generated)) for p in generated.rglob("*") if p.is_file())
    assert files == EXPECTED_FILES
    for name in files:
        text = (generated / name).read_text()
        assert "{{" not in text and "}}" not in text, name
        if name.endswith(".py"):
            compile(text, name, "exec")


def test_pyproject_declares_distribution_dependency_and_entry_point(generated):
    pyproject = (generated / "pyproject.toml").read_text()
    core_major, core_minor = (int(p) for p in xlm_core.__version__.split(".")[:2])
    assert core_major == 0  # the range below is the 0.x rule: same minor
    assert 'name = "xlm-my_fam"' in pyproject
    assert (
        f'dependencies = ["xlm-core>={core_major}.{core_minor},<{core_major}.{core_minor + 1}"]'
        in pyproject
    )
    assert '[project.entry-points."xlm.plugins"]\nmy_fam = "xlm_my_fam.plugin"' in pyproject
    assert 'include = ["xlm_my_fam*"]' in pyproject  # tests/ is not shipped as a package


def test_class_names_and_api_version(generated):
    plugin = (generated / "xlm_my_fam" / "plugin.py").read_text()
    assert "from xlm_my_fam.config import MyFamConfig, MyFamSettings" in plugin
    assert 'ComponentRef(path="xlm_my_fam.predictor:MyFamPredictor")' in plugin
    api = ".".join(xlm_core.PLUGIN_API_VERSION.split(".")[:2])
    assert f'api_version="{api}"' in plugin
    assert template_values("my_fam")["core_requirement"].startswith("xlm-core>=")


@pytest.mark.parametrize("module", ["plugin.py", "config.py", "__init__.py"])
def test_entry_modules_never_import_torch(generated, module):
    tree = ast.parse((generated / "xlm_my_fam" / module).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "typing", "pydantic", "xlm_core", "xlm_my_fam"}, imported
    assert all(
        node.module in ("xlm_core.plugins", "xlm_my_fam.config")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xlm_")
    )


@pytest.mark.parametrize("name", ["Toy", "toy-2", "2toy", "import", "", "naïve"])
def test_bad_names_are_rejected(name):
    with pytest.raises(XLMUserError, match="invalid plugin name"):
        check_name(name)


def test_an_existing_target_is_never_touched(generated):
    with pytest.raises(XLMUserError, match="already exists"):
        create_plugin("my_fam", generated.parent)


def _load_test_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_family_passes_the_kit_and_its_own_tests(generated, monkeypatch):
    """In-process, as the generated tests run after `pip install -e`: the entry point is emulated."""
    monkeypatch.syspath_prepend(str(generated))
    registry = Registry(discover=False, disabled=())
    record = registry.register(importlib.import_module("xlm_my_fam.plugin"), name="my_fam")
    assert record.status == "ok", record.error
    reset_registry(registry)
    try:
        results = run_conformance("my_fam")
        assert all(r.passed for r in results), [r for r in results if not r.passed]

        conformance = _load_test_module(generated / "tests" / "test_conformance.py")
        for check in CHECK_NAMES:
            conformance.test_conformance(check)
        family_tests = _load_test_module(generated / "tests" / "test_family.py")
        tests = [f for name, f in vars(family_tests).items() if name.startswith("test_")]
        assert tests, "no test_ function found: this test would prove nothing"
        for test in tests:
            test()
    finally:
        reset_registry(None)


def test_the_generated_family_uses_the_shared_window_layout(generated):
    uses = {
        "collator.py": ["from xlm_core.nn.window import append_window, training_rows"],
        "predictor.py": [
            "from xlm_core.nn.window import masked_rows, output_ids, output_lengths, window_length, window_logits",
            "from xlm_core.nn.unmasking import most_confident",
            "from xlm_core.predicting import as_settings, predict_preamble",
            "    @predict_preamble(MyFamSettings)",
        ],
        "config.py": ["from xlm_core.plugins import ConfidenceKind, FamilyConfig, PredictorSettings"],
    }
    for module, lines in uses.items():
        text = (generated / "xlm_my_fam" / module).read_text().splitlines()
        for line in lines:
            assert line in text, (module, line)


@pytest.fixture(scope="module")
def site(generated, tmp_path_factory) -> Path:
    """The generated package pip-installed into a folder of its own, as a plugin author would."""
    site = tmp_path_factory.mktemp("site")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
        ]
        + ["--target", str(site), str(generated)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    return site


def test_pip_install_then_plugins_list_shows_it_ok(site, tmp_path, clean_env):
    listed = subprocess.run(
        [sys.executable, "-m", "xlm_core.cli.main", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(site)),
        timeout=120,
        cwd=tmp_path,  # not the generated folder: the plugin must come from the install
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["my_fam"] == {
        "name": "my_fam",
        "distribution": "xlm-my_fam",
        "version": "0.1.0",
        "api_version": ".".join(xlm_core.PLUGIN_API_VERSION.split(".")[:2]),
        "status": "ok",
        "error": None,
    }


def test_the_installed_entry_module_imports_without_torch(site, monkeypatch):
    """The check really runs (no skip) once an entry point names the module."""
    monkeypatch.syspath_prepend(str(site))
    registry = Registry(discover=True, disabled=())
    results = run_conformance(registry.get("my_fam"), checks=["entry_module_without_torch"])
    assert results == [CheckResult("entry_module_without_torch", True)]
