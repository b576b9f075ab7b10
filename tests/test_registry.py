"""The plugin registry: loading, validation and isolation of plugins (all registered in-process)."""

from __future__ import annotations

import types
from importlib import metadata

import pydantic
import pytest

import xlm_core
from xlm_core.errors import PluginError, StrictPluginError
from xlm_core.plugins import ComponentRef, Registry, TaskRef, hookimpl
from xlm_core.plugins import registry as registry_module

CORE_MAJOR, CORE_MINOR = (int(p) for p in xlm_core.PLUGIN_API_VERSION.split(".")[:2])


def load(plugin, name: str | None = None, **kwargs):
    registry = Registry(discover=False, disabled=kwargs.pop("disabled", ()))
    record = registry.register(plugin, name=name or "fake", distribution=("xlm-fake", "0.3.0"))
    return registry, record


def test_a_good_plugin_is_ok_and_usable(make_fake_plugin):
    registry, record = load(make_fake_plugin())
    assert (record.status, record.error, record.warnings) == ("ok", None, [])
    assert record.as_row() == {
        "name": "fake",
        "distribution": "xlm-fake",
        "version": "0.3.0",
        "api_version": f"{CORE_MAJOR}.{CORE_MINOR}",
        "status": "ok",
        "error": None,
    }
    family = registry.get("fake")
    assert [f.name for f in registry.families()] == ["fake"]
    assert family.record.components["loss"].path == "xlm_fake_fake.loss:FakeLoss"
    assert family.make_config(d_model=64).d_model == 64


def test_a_missing_component_kind_fails(make_fake_plugin):
    _, record = load(make_fake_plugin(omit=("loss",)))
    assert record.status == "failed"
    assert (
        record.error
        == "plugin 'fake' (xlm-fake 0.3.0): missing component 'loss': implement xlm_loss()"
    )


def test_a_plugin_without_xlm_family_fails(make_fake_plugin):
    _, record = load(make_fake_plugin(omit=("family",)))
    assert record.status == "failed" and "does not implement xlm_family()" in record.error


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (dict, "is not a pydantic model class"),
        (
            type("Plain", (pydantic.BaseModel,), {"__annotations__": {"x": int}}),
            "must subclass xlm_core.plugins.FamilyConfig",
        ),
    ],
)
def test_a_config_that_is_not_a_family_config_fails_on_one_line(make_fake_plugin, config, words):
    _, record = load(make_fake_plugin(config=config))
    assert record.status == "failed"
    assert words in record.error
    assert record.error.startswith(
        "plugin 'fake' (xlm-fake 0.3.0): invalid FamilyManifest: config:"
    )
    assert "\n" not in record.error


def test_another_api_major_is_incompatible(make_fake_plugin):
    registry, record = load(make_fake_plugin(api_version=f"{CORE_MAJOR + 1}.0"))
    assert record.status == "incompatible"
    assert f"targets plugin API {CORE_MAJOR + 1}.0" in record.error
    assert f"built for API {CORE_MAJOR}.x" in record.error
    with pytest.raises(PluginError, match="targets plugin API"):
        registry.get("fake")
    assert registry.failures() == [record]


def test_a_newer_minor_api_loads_with_a_warning(make_fake_plugin):
    registry, record = load(make_fake_plugin(api_version=f"{CORE_MAJOR}.{CORE_MINOR + 1}"))
    assert record.status == "ok"
    assert len(record.warnings) == 1 and "newer than xlm-core's" in record.warnings[0]
    assert "upgrade xlm-core" in record.warnings[0]
    registry.get("fake")


def test_an_unparseable_api_version_fails(make_fake_plugin):
    _, record = load(make_fake_plugin(api_version="one"))
    assert record.status == "failed" and "MAJOR.MINOR" in record.error


def test_an_exception_inside_a_hook_fails_with_its_message(make_fake_plugin):
    _, record = load(make_fake_plugin(family_error=RuntimeError("no GPU here\nsecond line")))
    assert record.status == "failed"
    assert record.error == "plugin 'fake' (xlm-fake 0.3.0): RuntimeError: no GPU here second line"


def test_an_import_error_fails_with_its_message():
    def entry_point_load():
        raise ModuleNotFoundError("No module named 'xlm_fake.plugin'")

    _, record = load(entry_point_load)
    assert record.status == "failed"
    assert record.error.endswith(
        "cannot load: ModuleNotFoundError: No module named 'xlm_fake.plugin'"
    )


def test_a_hook_returning_the_wrong_record_fails(make_fake_plugin):
    plugin = make_fake_plugin()
    plugin.xlm_model = hookimpl(lambda: "xlm_fake.model:Model")
    _, record = load(plugin)
    assert (
        record.status == "failed"
        and "xlm_model() returned str, expected ComponentRef" in record.error
    )


def test_the_manifest_name_must_match_the_entry_point(make_fake_plugin):
    _, record = load(make_fake_plugin(manifest_name="other"))
    assert (
        record.status == "failed"
        and "names the family 'other' but the entry point is 'fake'" in record.error
    )


def test_tasks_from_the_optional_hook_are_recorded(make_fake_plugin):
    plugin = make_fake_plugin()
    task = TaskRef(
        name="sudoku", description="9x9", factory=ComponentRef(path="xlm_fake.tasks:make")
    )
    plugin.xlm_tasks = hookimpl(lambda: [task])
    _, record = load(plugin)
    assert record.status == "ok" and record.tasks == [task]


def test_a_component_breaking_its_contract_fails_when_resolved(make_fake_plugin, fakes_module):
    class LossWithoutKind:  # no nll_kind
        def __init__(self, config, vocab): ...

        def __call__(self, model, batch): ...

    registry, record = load(make_fake_plugin(components={"loss": fakes_module(LossWithoutKind)}))
    assert record.status == "ok"  # components are checked on first use, not at listing time
    family = registry.get("fake")
    with pytest.raises(PluginError, match="must declare nll_kind"):
        family.component("loss")
    assert record.status == "failed"
    with pytest.raises(PluginError, match="must declare nll_kind"):
        registry.get("fake")


def test_a_component_that_cannot_be_imported_fails_when_resolved(make_fake_plugin):
    registry, record = load(make_fake_plugin())
    with pytest.raises(
        PluginError,
        match="cannot import model 'xlm_fake_fake.model:FakeModel': ModuleNotFoundError",
    ):
        registry.get("fake").component("model")
    assert record.status == "failed"


def test_a_broken_plugin_leaves_the_others_usable(make_fake_plugin):
    registry = Registry(discover=False, disabled=())
    registry.register(make_fake_plugin("good"), name="good")
    registry.register(make_fake_plugin("bad", family_error=ValueError("broken")), name="bad")
    registry.register(make_fake_plugin("old", api_version=f"{CORE_MAJOR + 1}.0"), name="old")
    assert [(r.name, r.status) for r in registry.records()] == [
        ("bad", "failed"),
        ("good", "ok"),
        ("old", "incompatible"),
    ]
    assert [f.name for f in registry.families()] == ["good"]
    registry.get("good")


def test_the_same_name_registered_twice_in_process_names_both(make_fake_plugin):
    registry = Registry(discover=False, disabled=())
    registry.register(make_fake_plugin("dup"), name="dup", distribution=("xlm-dup", "1.0"))
    registry.register(make_fake_plugin("dup"), name="dup", distribution=("xlm-dup2", "2.0"))
    records = registry.records()
    assert [r.status for r in records] == ["failed", "failed"]
    for r in records:
        assert "xlm-dup 1.0" in r.error and "xlm-dup2 2.0" in r.error
    with pytest.raises(PluginError, match="registered twice"):
        registry.get("dup")


class FakeEntryPoint:
    """What ``importlib.metadata.entry_points`` yields, reduced to what the registry reads."""

    def __init__(self, name: str, dist: str | None, version: str | None, loader):
        self.name, self._loader = name, loader
        self.dist = (
            types.SimpleNamespace(metadata={"Name": dist}, version=version) if dist else None
        )

    def load(self):
        return self._loader()


def test_discovery_names_both_distributions_of_a_clashing_name(monkeypatch, make_fake_plugin):
    def missing():
        raise ModuleNotFoundError("No module named 'xlm_broken'")

    entry_points = [
        FakeEntryPoint("toy", "xlm-toy", "0.1.0", lambda: make_fake_plugin("toy")),
        FakeEntryPoint("toy", "toy-fork", "0.9.0", lambda: make_fake_plugin("toy")),
        FakeEntryPoint("solo", "xlm-solo", "1.2.3", lambda: make_fake_plugin("solo")),
        FakeEntryPoint("broken", "xlm-broken", "0.0.1", missing),
    ]
    seen_groups = []

    def fake_entry_points(*, group):
        seen_groups.append(group)
        return entry_points

    monkeypatch.setattr(registry_module.metadata, "entry_points", fake_entry_points)
    registry = Registry(disabled=())
    assert seen_groups == ["xlm.plugins"]
    rows = {(r.name, r.distribution): r for r in registry.records()}
    assert rows["solo", "xlm-solo"].status == "ok" and rows["solo", "xlm-solo"].version == "1.2.3"
    assert rows["broken", "xlm-broken"].status == "failed"
    assert "No module named 'xlm_broken'" in rows["broken", "xlm-broken"].error
    for dist in ("xlm-toy", "toy-fork"):
        record = rows["toy", dist]
        assert record.status == "failed"
        assert (
            "toy-fork 0.9.0 and xlm-toy 0.1.0" in record.error and "uninstall one" in record.error
        )
    with pytest.raises(PluginError, match="registered by both"):
        registry.get("toy")
    assert metadata.entry_points is fake_entry_points


def test_disabled_plugins_are_skipped(monkeypatch, make_fake_plugin):
    monkeypatch.setenv("XLM_DISABLE_PLUGINS", " fake , other")

    def must_not_load():
        raise AssertionError("a disabled plugin must not even be imported")

    registry = Registry(discover=False)
    record = registry.register(must_not_load, name="fake", distribution=("xlm-fake", "0.3.0"))
    registry.register(make_fake_plugin("third"), name="third")
    assert record.status == "disabled" and record.error is None
    assert [f.name for f in registry.families()] == ["third"]
    with pytest.raises(PluginError, match="disabled by XLM_DISABLE_PLUGINS"):
        registry.get("fake")


def test_unknown_plugin_error_lists_what_is_installed(make_fake_plugin):
    registry, _ = load(make_fake_plugin())
    with pytest.raises(
        PluginError, match=r"unknown plugin 'nope' \(installed: fake\); try `pip install xlm-nope`"
    ):
        registry.get("nope")


def test_strict_mode_turns_failures_into_an_error(monkeypatch, make_fake_plugin):
    registry, _ = load(make_fake_plugin(omit=("collator",)))
    registry.check_strict()  # not strict: nothing happens
    monkeypatch.setenv("XLM_STRICT_PLUGINS", "1")
    with pytest.raises(StrictPluginError, match="missing component 'collator'"):
        registry.check_strict()


def test_strict_mode_makes_plugins_list_exit_1(monkeypatch, registry, make_fake_plugin, cli):
    registry.register(make_fake_plugin("good"), name="good")
    registry.register(make_fake_plugin("bad", omit=("model",)), name="bad")
    assert cli("plugins", "list").code == 0
    monkeypatch.setenv("XLM_STRICT_PLUGINS", "1")
    result = cli("plugins", "list")
    assert result.code == 1
    assert "bad" in result.out and "good" in result.out  # the table still prints
    assert result.err.strip().splitlines() == [
        "error: plugin 'bad' (registered in-process): missing component 'model': implement xlm_model()"
    ]


def test_a_broken_plugin_does_not_break_help_or_other_commands(registry, make_fake_plugin, cli):
    registry.register(
        make_fake_plugin("bad", family_error=ImportError("cannot import torch_xla")), name="bad"
    )
    registry.register(make_fake_plugin("good"), name="good")
    assert cli("--help").code == 0
    assert cli("plugins", "show", "good").code == 0
    shown = cli("plugins", "show", "bad")
    assert shown.code == 2
    assert (
        shown.err
        == "error: plugin 'bad' (registered in-process): ImportError: cannot import torch_xla\n"
    )


def clashing_entry_points(monkeypatch, make_fake_plugin, loaded: list[str]) -> None:
    """Two distributions register the family 'toy'; ``loaded`` collects the ones imported."""

    def loader(dist):
        def load():
            loaded.append(dist)
            return make_fake_plugin("toy")

        return load

    entry_points = [
        FakeEntryPoint("toy", "xlm-toy", "0.1.0", loader("xlm-toy")),
        FakeEntryPoint("toy", "Toy_Fork", "0.9.0", loader("Toy_Fork")),
    ]
    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda *, group: entry_points)


@pytest.mark.parametrize(
    ("switch", "loads"),
    [
        ("toy-fork:toy", "xlm-toy"),
        (" TOY.fork : toy ,other", "xlm-toy"),  # distribution names compare as pip compares them
        ("xlm-toy:toy", "Toy_Fork"),
    ],
)
def test_disabling_one_distribution_of_a_clashing_name_loads_the_other(
    monkeypatch, make_fake_plugin, switch, loads
):
    loaded: list[str] = []
    clashing_entry_points(monkeypatch, make_fake_plugin, loaded)
    monkeypatch.setenv("XLM_DISABLE_PLUGINS", switch)
    registry = Registry()
    statuses = {r.distribution: r.status for r in registry.records()}
    assert statuses == {d: "ok" if d == loads else "disabled" for d in ("xlm-toy", "Toy_Fork")}
    assert loaded == [loads]  # the disabled distribution is not even imported
    assert registry.get("toy").record.distribution == loads


def test_disabling_a_name_disables_every_distribution_of_it(monkeypatch, make_fake_plugin):
    loaded: list[str] = []
    clashing_entry_points(monkeypatch, make_fake_plugin, loaded)
    monkeypatch.setenv("XLM_DISABLE_PLUGINS", "toy")
    registry = Registry()
    assert [r.status for r in registry.records()] == ["disabled", "disabled"] and loaded == []
    with pytest.raises(PluginError, match="disabled by XLM_DISABLE_PLUGINS"):
        registry.get("toy")


def test_a_name_clash_says_how_to_skip_one_distribution(monkeypatch, make_fake_plugin):
    clashing_entry_points(monkeypatch, make_fake_plugin, [])
    record = Registry(disabled=()).records()[0]
    assert record.error.endswith(
        "uninstall one, or skip one with XLM_DISABLE_PLUGINS=DISTRIBUTION:toy"
    )


HINT = (
    f'set api_version="{CORE_MAJOR}.{CORE_MINOR}" in xlm_family() (xlm_core.PLUGIN_API_VERSION)'
)


@pytest.mark.parametrize("api_version", [f"{CORE_MAJOR + 1}.0", "one", "1.x"])
def test_api_version_errors_say_what_to_write(make_fake_plugin, api_version):
    _, record = load(make_fake_plugin(api_version=api_version))
    assert record.error.endswith(HINT) and "\n" not in record.error


def test_strict_mode_stops_every_use_of_a_family(monkeypatch, make_fake_plugin):
    registry, _ = load(make_fake_plugin("good"), name="good")
    registry.register(make_fake_plugin("bad", omit=("loss",)), name="bad")
    registry.get("good")
    monkeypatch.setenv("XLM_STRICT_PLUGINS", "1")
    with pytest.raises(StrictPluginError, match="plugin 'bad' .*missing component 'loss'"):
        registry.get("good")
