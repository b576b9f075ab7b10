"""A plugin cannot take the CLI down (SystemExit, KeyboardInterrupt) or drive the terminal (escape codes)."""

from __future__ import annotations

import signal
import sys
import unicodedata

import pytest

from xlm_core.errors import PluginError
from xlm_core.plugins import Registry, hookimpl

RAISED = [
    pytest.param(lambda: SystemExit(3), "SystemExit: 3", id="SystemExit"),
    pytest.param(lambda: SystemExit(), "SystemExit", id="bare-SystemExit"),
    pytest.param(lambda: KeyboardInterrupt(), "KeyboardInterrupt", id="KeyboardInterrupt"),
]


def register(plugin, name: str = "fake", distribution=("xlm-fake", "0.3.0")):
    registry = Registry(discover=False, disabled=())
    return registry, registry.register(plugin, name=name, distribution=distribution)


def raising_hook(hook: str, make_exception):
    def raise_it():
        raise make_exception()

    raise_it.__name__ = hook
    return hookimpl(raise_it)


@pytest.fixture
def sigint_handler():
    """Python's own SIGINT handler (Ctrl-C raises KeyboardInterrupt), whatever an earlier test left
    installed; each test checks the registry put it back."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    after = signal.signal(signal.SIGINT, before)
    assert after is signal.default_int_handler


@pytest.mark.parametrize(("make_exception", "described"), RAISED)
def test_exit_or_interrupt_at_import_fails_the_plugin(sigint_handler, make_exception, described):
    def entry_point_load():
        raise make_exception()

    _, record = register(entry_point_load)
    assert record.status == "failed"
    assert record.error == f"plugin 'fake' (xlm-fake 0.3.0): cannot load: {described}"


@pytest.mark.parametrize("hook", ["xlm_family", "xlm_model", "xlm_collator", "xlm_tasks"])
@pytest.mark.parametrize(("make_exception", "described"), RAISED)
def test_exit_or_interrupt_inside_a_hook_fails_the_plugin(
    sigint_handler, make_fake_plugin, hook, make_exception, described
):
    plugin = make_fake_plugin()
    setattr(plugin, hook, raising_hook(hook, make_exception))
    other = make_fake_plugin("other")
    registry, record = register(plugin)
    registry.register(other, name="other")
    assert (record.status, record.error) == ("failed", f"plugin 'fake' (xlm-fake 0.3.0): {described}")
    assert [f.name for f in registry.families()] == ["other"]


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """``write(name, source)``: an importable module made of ``source``."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return write


@pytest.mark.parametrize(
    ("source", "described"),
    [
        pytest.param("raise SystemExit('no GPU')", "SystemExit: no GPU", id="SystemExit"),
        pytest.param("raise KeyboardInterrupt", "KeyboardInterrupt", id="KeyboardInterrupt"),
    ],
)
def test_exit_or_interrupt_when_a_component_is_resolved_fails_the_plugin(
    sigint_handler, make_fake_plugin, module_dir, source, described
):
    module = module_dir("xlm_fake_exits", source)
    registry, record = register(make_fake_plugin(components={"model": f"{module}:Model"}))
    with pytest.raises(PluginError) as info:
        registry.get("fake").component("model")
    assert str(info.value) == (
        f"plugin 'fake' (xlm-fake 0.3.0): cannot import model '{module}:Model': {described}"
    )
    assert record.status == "failed"


def test_the_users_ctrl_c_while_a_hook_runs_stops_loading(sigint_handler, make_fake_plugin):
    plugin = make_fake_plugin()

    @hookimpl
    def xlm_family():
        signal.raise_signal(signal.SIGINT)  # what pressing Ctrl-C does
        raise AssertionError("the KeyboardInterrupt is raised before this line")

    plugin.xlm_family = xlm_family
    with pytest.raises(KeyboardInterrupt):
        register(plugin)


def test_the_users_ctrl_c_while_a_component_imports_stops_the_command(
    sigint_handler, make_fake_plugin, module_dir
):
    module = module_dir("xlm_fake_slow", "import signal\nsignal.raise_signal(signal.SIGINT)\n")
    registry, record = register(make_fake_plugin(components={"model": f"{module}:Model"}))
    with pytest.raises(KeyboardInterrupt):
        registry.get("fake").component("model")
    assert record.status == "ok"  # the plugin did nothing wrong


# -- control characters --------------------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b[31mred\x07 \u202eright-to-left\x9b"
ESCAPED = "\\x1b[2J\\x1b[31mred\\x07 \\u202eright-to-left\\x9b"


def unprintable(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\n"]


def test_a_plugins_error_message_is_escaped(make_fake_plugin):
    _, record = register(make_fake_plugin(family_error=RuntimeError(HOSTILE)))
    assert record.error == f"plugin 'fake' (xlm-fake 0.3.0): RuntimeError: {ESCAPED}"


def test_installed_metadata_is_escaped(make_fake_plugin):
    _, record = register(
        make_fake_plugin(omit=("loss",)), distribution=("xlm-fake\x1b[2J", "1.0\x1b[0m")
    )
    assert record.error.startswith("plugin 'fake' (xlm-fake\\x1b[2J 1.0\\x1b[0m): missing")


@pytest.fixture
def hostile(registry, make_fake_plugin):
    registry.register(
        make_fake_plugin("evil", family_error=RuntimeError(HOSTILE)),
        name="evil",
        distribution=("xlm-evil\x1b[5m", "6.6\x07"),
    )
    return registry


@pytest.mark.parametrize(
    "args", [("plugins", "list"), ("plugins", "show", "evil"), ("plugins", "validate")]
)
def test_the_cli_prints_no_raw_control_characters(hostile, cli, args):
    result = cli(*args)
    assert ESCAPED in result.out + result.err  # the plugin's error was printed, escaped
    assert unprintable(result.out) == [] and unprintable(result.err) == []
