"""The task registry: built-ins, plugin tasks, unknown names, and ``xlm tasks list``."""

from __future__ import annotations

import importlib
import json
import textwrap

import pytest

import xlm_core
from xlm_core.cli.main import run
from xlm_core.config import TaskConfig
from xlm_core.data.star import StarTask
from xlm_core.data.tasks import Task, build_task, list_tasks
from xlm_core.errors import PluginError, XLMUserError
from xlm_core.plugins import Registry, reset_registry

PLUGIN = f'''
from xlm_core.plugins import ComponentRef, FamilyConfig, FamilyManifest, TaskRef, hookimpl


class ToyConfig(FamilyConfig):
    pass


@hookimpl
def xlm_family():
    return FamilyManifest(name="toy", api_version="{xlm_core.PLUGIN_API_VERSION}", config=ToyConfig)


@hookimpl
def xlm_model():
    return ComponentRef(path="toy_tasks_plugin:Model")


@hookimpl
def xlm_loss():
    return ComponentRef(path="toy_tasks_plugin:Loss")


@hookimpl
def xlm_predictor():
    return ComponentRef(path="toy_tasks_plugin:Predictor")


@hookimpl
def xlm_collator():
    return ComponentRef(path="toy_tasks_plugin:Collator")


@hookimpl
def xlm_tasks():
    return [
        TaskRef(name="toy-star", description="a tiny star", factory=ComponentRef(path="toy_tasks_plugin:make_star")),
        TaskRef(name="toy-broken", description="cannot import", factory=ComponentRef(path="no_such_module:make")),
        TaskRef(name="toy-wrong", description="not a task", factory=ComponentRef(path="toy_tasks_plugin:make_wrong")),
        TaskRef(name="star-easy", description="shadowed", factory=ComponentRef(path="toy_tasks_plugin:make_wrong")),
    ]


def make_star(config):
    from xlm_core.data.star import StarSpec, StarTask

    return StarTask(StarSpec("toy-star", 2, 3, 3, 2, 8, centred=True), config.seed)


def make_wrong(config):
    return object()
'''


@pytest.fixture
def toy_registry(tmp_path, monkeypatch):
    (tmp_path / "toy_tasks_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_tasks_plugin")
    registry = Registry(discover=False)
    record = registry.register(module, name="toy", distribution=("xlm-toy", "0.1"))
    assert record.status == "ok", record.error
    reset_registry(registry)
    yield registry
    reset_registry(None)


@pytest.fixture
def empty_registry():
    reset_registry(Registry(discover=False))
    yield
    reset_registry(None)


def test_built_ins_are_listed(empty_registry):
    rows = [(t.name, t.kind, t.source) for t in list_tasks()]
    assert rows == [
        ("star-easy", "prompted", "built-in"),
        ("star-medium", "prompted", "built-in"),
        ("star-hard", "prompted", "built-in"),
        ("text", "text", "built-in"),
        ("distilled", None, "built-in"),
    ]
    assert all(t.description for t in list_tasks())


def test_built_in_tasks_satisfy_the_protocol(empty_registry):
    task = build_task(TaskConfig(name="star-hard", seed=3))
    assert isinstance(task, Task) and isinstance(task, StarTask) and task.seed == 3


def test_unknown_task_suggests_the_closest(empty_registry):
    with pytest.raises(
        XLMUserError,
        match=r"unknown task 'star-eazy' \(known: star-easy, .*text, distilled\); did you mean 'star-easy'\?",
    ):
        build_task(TaskConfig(name="star-eazy"))
    with pytest.raises(XLMUserError, match=r"unknown task 'qqqq' \(known: [^)]*\)$"):
        build_task(TaskConfig(name="qqqq"))


def test_plugin_tasks_are_listed_and_built(toy_registry):
    rows = {(t.name, t.source) for t in list_tasks()}
    assert {("toy-star", "toy"), ("toy-broken", "toy"), ("toy-wrong", "toy")} <= rows
    assert ("star-easy", "toy") not in rows  # a built-in name always means the built-in task
    assert isinstance(build_task(TaskConfig(name="star-easy")), StarTask)
    task = build_task(TaskConfig(name="toy-star"))
    assert task.name == "toy-star" and task.shape.target_length == 4
    assert len(task.examples("validation")) == 100


def test_broken_plugin_tasks_name_the_plugin(toy_registry):
    with pytest.raises(
        PluginError, match="plugin 'toy': cannot import task factory 'no_such_module:make'"
    ):
        build_task(TaskConfig(name="toy-broken"))
    with pytest.raises(PluginError, match="plugin 'toy': .*returned object without name, kind"):
        build_task(TaskConfig(name="toy-wrong"))


def test_cli_tasks_list_json(toy_registry, capsys):
    run(["tasks", "list", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]) == {"name", "kind", "description", "source"}
    assert rows[0] == {
        "name": "star-easy",
        "kind": "prompted",
        "description": list_tasks()[0].description,
        "source": "built-in",
    }
    assert {"name": "toy-star", "kind": None, "description": "a tiny star", "source": "toy"} in rows
    run(["tasks", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["star-easy", "prompted", "built-in"]
    assert any(line.split()[:3] == ["toy-star", "-", "toy"] for line in lines)


def test_listing_tasks_does_not_import_torch_or_datasets():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from xlm_core.cli.main import run\n"
        "run(['tasks', 'list', '--json'])\n"
        "assert 'torch' not in sys.modules and 'datasets' not in sys.modules, 'heavy import'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["name"] == "star-easy"
