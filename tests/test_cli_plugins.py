"""``xlm plugins list | show | validate | new`` against plugins registered in-process (and one fake install)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import xlm_core
from xlm_core.components import LossOutput
from xlm_core.testing import CHECK_NAMES

#: The API the fake plugins target: the core's own major.minor.
API = ".".join(xlm_core.PLUGIN_API_VERSION.split(".")[:2])

ROW_KEYS = ["name", "distribution", "version", "api_version", "status", "error"]


def xlm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xlm_core.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


# -- list ------------------------------------------------------------------------------------


def test_list_prints_an_aligned_table(registry, reference_family, make_fake_plugin, cli):
    registry.register(make_fake_plugin("zbroken", omit=("predictor",)), name="zbroken")
    result = cli("plugins", "list")
    assert result.code == 0
    header, *rows = result.out.splitlines()
    assert header.split() == ["NAME", "DISTRIBUTION", "VERSION", "API", "STATUS", "ERROR"]
    assert rows[0].split() == ["kitref", "xlm-kitref", "0.1.0", API, "ok", "-"]
    assert rows[1].split()[:5] == ["zbroken", "(in-process)", "-", API, "failed"]
    assert rows[1].endswith("missing component 'predictor': implement xlm_predictor()")
    status_column = header.index("STATUS")
    assert [row[status_column:].split()[0] for row in rows] == ["ok", "failed"]


def test_list_json_has_exactly_the_documented_keys(
    registry, reference_family, make_fake_plugin, cli
):
    registry.register(make_fake_plugin("zbroken", family_error=KeyError("x")), name="zbroken")
    result = cli("plugins", "list", "--json")
    assert result.code == 0
    rows = json.loads(result.out)
    assert [list(row) for row in rows] == [ROW_KEYS, ROW_KEYS]
    assert rows[0] == {
        "name": "kitref",
        "distribution": "xlm-kitref",
        "version": "0.1.0",
        "api_version": API,
        "status": "ok",
        "error": None,
    }
    assert rows[1]["status"] == "failed" and rows[1]["error"].endswith("KeyError: 'x'")


def test_list_prints_load_warnings_to_stderr(registry, make_fake_plugin, cli):
    registry.register(make_fake_plugin("future", api_version="1.99"), name="future")
    result = cli("plugins", "list", "--json")
    assert json.loads(result.out)[0]["status"] == "ok"  # stdout stays valid JSON
    assert result.err.startswith(
        "warning: plugin 'future' (registered in-process) targets plugin API 1.99"
    )


def test_list_with_no_plugins_says_how_to_get_one(registry, cli):
    assert "no plugins installed" in cli("plugins", "list").out
    assert json.loads(cli("plugins", "list", "--json").out) == []


# -- show ------------------------------------------------------------------------------------


def test_show_prints_config_settings_and_presets(reference_family, cli):
    result = cli("plugins", "show", "kitref")
    assert result.code == 0, result.err
    out = result.out
    assert out.startswith("kitref: Minimal masked-denoising LM")
    assert f"xlm-kitref 0.1.0, plugin API {API}" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["d_model"].split()[:4] == ["d_model", "int", ">0", "128"]
    assert lines["min_mask_rate"].split()[:5] == ["min_mask_rate", "float", ">=0.0", "<1.0", "0.0"]
    assert "Literal['top_prob', 'margin', 'neg_entropy']" in lines["confidence"]
    assert '"top_prob"' in lines["confidence"]
    assert lines["max_new_tokens"].split()[:5] == ["max_new_tokens", "int", "|", "None", ">=1"]
    assert lines["demo"].split()[1:] == [
        "model.d_model=64",
        "model.n_layers=2",
        "model.n_heads=4",
        "predictor.steps=4",
        "training.max_steps=300",
        "training.batch_size=32",
    ]


def test_show_json(reference_family, cli):
    shown = json.loads(cli("plugins", "show", "kitref", "--json").out)
    assert shown["name"] == "kitref" and shown["api_version"] == API
    assert shown["config"]["class"] == "xlm_kitref.config.KitrefConfig"
    fields = {f["field"]: f for f in shown["config"]["fields"]}
    assert fields["d_ff"] == {
        "field": "d_ff",
        "type": "int | None >0",
        "default": None,
        "description": "Hidden size of the MLP; default 4 * d_model.",
    }
    settings = {f["field"]: f for f in shown["predictor_settings"]["fields"]}
    assert settings["steps"]["default"] == 8
    assert set(shown["presets"]) == {"tiny", "small", "star", "lm1b", "owt", "demo"}


def test_show_unknown_plugin_is_one_line_exit_2(registry, reference_family, cli):
    result = cli("plugins", "show", "nosuch")
    assert result.code == 2
    assert result.out == ""
    assert (
        result.err
        == "error: unknown plugin 'nosuch' (installed: kitref); try `pip install xlm-nosuch`\n"
    )


# -- validate --------------------------------------------------------------------------------


class NaNLoss:
    nll_kind = "none"

    def __init__(self, config, vocab):
        from xlm_kitref.loss import KitrefLoss

        self.inner = KitrefLoss(config, vocab)

    def __call__(self, model, batch):
        out = self.inner(model, batch)
        return LossOutput(out.loss * float("nan"), out.n_tokens)


@pytest.fixture
def nan_family(registry, scaffolded, make_fake_plugin, fakes_module):
    manifest = scaffolded.plugin_module().xlm_family()
    paths = {**scaffolded.component_paths(), "loss": fakes_module(NaNLoss)}
    plugin = make_fake_plugin(
        "nanloss", config=manifest.config, settings=manifest.predictor_settings, components=paths
    )
    registry.register(plugin, name="nanloss")


def test_validate_a_good_family(reference_family, cli):
    result = cli("plugins", "validate", "kitref")
    assert result.code == 0, result.out
    lines = result.out.splitlines()
    assert lines[0] == "kitref (xlm-kitref 0.1.0)"
    assert lines[1 : 1 + len(CHECK_NAMES)] == [f"  PASS  {check}" for check in CHECK_NAMES]
    assert lines[-1] == "all checks passed (1 plugin)"


def test_validate_lists_the_failed_checks_and_exits_1(nan_family, cli):
    result = cli("plugins", "validate", "nanloss")
    assert result.code == 1
    assert "  FAIL  loss_finite_and_grads: the loss is not finite (nan)" in result.out
    assert "  PASS  predictor_terminates" in result.out
    assert result.out.splitlines()[-1] == "FAILED (1 plugin): nanloss/loss_finite_and_grads"


def test_validate_everything_reports_load_failures_and_skips_incompatible(
    registry, reference_family, make_fake_plugin, cli
):
    registry.register(make_fake_plugin("aloadfail", omit=("model",)), name="aloadfail")
    registry.register(make_fake_plugin("old", api_version="0.9"), name="old")
    result = cli("plugins", "validate")
    assert result.code == 1
    assert (
        "aloadfail (registered in-process)\n  FAIL  load: missing component 'model'" in result.out
    )
    assert "old (registered in-process)\n  SKIP  incompatible: targets plugin API 0.9" in result.out
    assert "kitref (xlm-kitref 0.1.0)\n  PASS  presets" in result.out
    assert result.out.splitlines()[-1] == "FAILED (3 plugins): aloadfail/load"
    strict = cli("plugins", "validate", "--strict")
    assert strict.out.splitlines()[-1] == "FAILED (3 plugins): aloadfail/load, old/load"


def test_validate_strict_fails_on_load_warnings(registry, scaffolded, make_fake_plugin, cli):
    manifest = scaffolded.plugin_module().xlm_family()
    plugin = make_fake_plugin(
        "future",
        api_version="1.99",
        config=manifest.config,
        settings=manifest.predictor_settings,
        components=scaffolded.component_paths(),
    )
    registry.register(plugin, name="future")
    relaxed = cli("plugins", "validate", "future")
    assert relaxed.code == 0 and "  WARN  warning: plugin 'future'" in relaxed.out
    strict = cli("plugins", "validate", "future", "--strict")
    assert strict.code == 1 and strict.out.splitlines()[-1] == "FAILED (1 plugin): future/warning"


def test_validate_a_named_incompatible_plugin_fails(registry, make_fake_plugin, cli):
    registry.register(make_fake_plugin("old", api_version="0.9"), name="old")
    result = cli("plugins", "validate", "old")
    assert result.code == 1 and "FAIL  load: targets plugin API 0.9" in result.out


def test_validate_unknown_or_disabled_plugin_is_a_user_error(
    monkeypatch, registry, make_fake_plugin, cli
):
    unknown = cli("plugins", "validate", "nosuch")
    assert unknown.code == 2 and unknown.err.startswith("error: unknown plugin 'nosuch'")
    from xlm_core.plugins import Registry, reset_registry

    monkeypatch.setenv("XLM_DISABLE_PLUGINS", "off")
    with_disabled = Registry(discover=False)
    with_disabled.register(make_fake_plugin("off"), name="off")
    reset_registry(with_disabled)
    disabled = cli("plugins", "validate", "off")
    assert disabled.code == 2 and "disabled by XLM_DISABLE_PLUGINS" in disabled.err
    assert cli("plugins", "validate").out == "no plugins to validate\n"  # disabled ones are skipped


# -- new -------------------------------------------------------------------------------------


def test_new_writes_the_package_and_prints_next_steps(tmp_path, cli):
    result = cli("plugins", "new", "toy", "--dir", str(tmp_path))
    assert result.code == 0, result.err
    root = tmp_path / "xlm-toy"
    assert result.out.splitlines()[0] == f"created {root}"
    assert f"pip install -e {root}" in result.out
    assert (root / "xlm_toy" / "plugin.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "xlm-toy"
    ]  # no staging folder left behind


@pytest.mark.parametrize("name", ["Toy", "my-fam", "1st", "class", "toy!", ""])
def test_new_rejects_a_bad_name_and_writes_nothing(tmp_path, cli, name):
    result = cli("plugins", "new", name, "--dir", str(tmp_path / "out"))
    assert result.code == 2
    assert (
        result.err.startswith(f"error: invalid plugin name {name!r}")
        and result.err.count("\n") == 1
    )
    assert not (tmp_path / "out").exists()


def test_new_never_overwrites(tmp_path, cli):
    existing = tmp_path / "xlm-toy"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    result = cli("plugins", "new", "toy", "--dir", str(tmp_path))
    assert (
        result.code == 2
        and result.err == f"error: {existing} already exists; choose another --dir or remove it\n"
    )
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert cli("plugins", "new", "toy", "--dir", str(a_file)).code == 2


# -- real processes: env switches, debug tracebacks, a broken installed distribution ------------


@pytest.fixture
def broken_install(tmp_path: Path) -> Path:
    """A site directory holding an installed distribution whose plugin module does not exist."""
    site = tmp_path / "site"
    info = site / "xlm_broken-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-broken\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[xlm.plugins]\nbroken = xlm_broken_missing.plugin\n")
    return site


def test_a_broken_installed_plugin_is_listed_not_fatal(broken_install, clean_env):
    env = clean_env(PYTHONPATH=str(broken_install))
    listed = xlm("plugins", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["broken"] == {
        "name": "broken",
        "distribution": "xlm-broken",
        "version": "0.0.1",
        "api_version": None,
        "status": "failed",
        "error": "plugin 'broken' (xlm-broken 0.0.1): cannot load: ModuleNotFoundError: "
        "No module named 'xlm_broken_missing'",
    }
    assert xlm("--help", env=env).returncode == 0

    strict = xlm("plugins", "list", env={**env, "XLM_STRICT_PLUGINS": "1"})
    assert strict.returncode == 1
    assert "plugin 'broken' (xlm-broken 0.0.1): cannot load" in strict.stderr.splitlines()[-1]

    disabled = xlm("plugins", "list", "--json", env={**env, "XLM_DISABLE_PLUGINS": "broken"})
    assert {r["name"]: r["status"] for r in json.loads(disabled.stdout)}["broken"] == "disabled"


def test_user_errors_are_one_line_unless_xlm_debug(clean_env):
    env = clean_env(XLM_DISABLE_PLUGINS="arlm,mdlm,mlm,ilm")
    for args in (
        ["plugins", "show", "nosuch"],
        ["plugins", "frobnicate"],
        ["plugins", "list", "--bogus"],
    ):
        result = xlm(*args, env=env)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
    debug = xlm("plugins", "show", "nosuch", env={**env, "XLM_DEBUG": "1"})
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("error: unknown plugin 'nosuch'")


# -- XLM_STRICT_PLUGINS in every command that loads plugins ----------------------------------


@pytest.fixture
def checkpoint_of_kitref(tmp_path: Path) -> Path:
    """Enough of a checkpoint for generate and eval to look up its family."""
    directory = tmp_path / "ckpt"
    directory.mkdir()
    meta = {"format_version": 1, "plugin": {"name": "kitref"}, "run_config": {}}
    (directory / "config.json").write_text(json.dumps(meta))
    return directory


@pytest.mark.parametrize(
    "args",
    [
        ["plugins", "show", "kitref"],
        ["plugins", "validate", "kitref"],
        ["train", "--plugin", "kitref", "--print-config"],
        ["generate", "--checkpoint", "CKPT"],
        ["eval", "--checkpoint", "CKPT"],
    ],
)
def test_strict_mode_makes_every_command_exit_1(
    monkeypatch, registry, reference_family, make_fake_plugin, checkpoint_of_kitref, cli, args
):
    registry.register(make_fake_plugin("bad", omit=("model",)), name="bad")
    args = [str(checkpoint_of_kitref) if a == "CKPT" else a for a in args]
    monkeypatch.setenv("XLM_STRICT_PLUGINS", "1")
    result = cli(*args)
    assert result.code == 1
    assert result.err.splitlines() == [
        "error: plugin 'bad' (registered in-process): missing component 'model': implement xlm_model()"
    ]
    assert "all checks passed" not in result.out


def test_strict_validate_still_prints_its_report(
    monkeypatch, registry, reference_family, make_fake_plugin, cli
):
    registry.register(make_fake_plugin("bad", omit=("model",)), name="bad")
    assert cli("plugins", "validate", "kitref").code == 0
    monkeypatch.setenv("XLM_STRICT_PLUGINS", "1")
    result = cli("plugins", "validate", "kitref")
    assert result.code == 1 and "  PASS  presets" in result.out


# -- a plugin that exits or raises KeyboardInterrupt at import ------------------------------


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import sys\nsys.exit(0)\n", "cannot load: SystemExit: 0"),
        ("raise SystemExit('bye')\n", "cannot load: SystemExit: bye"),
        ("raise KeyboardInterrupt\n", "cannot load: KeyboardInterrupt"),
    ],
)
def test_a_plugin_exiting_at_import_is_listed_as_failed(tmp_path, clean_env, source, error):
    site = tmp_path / "site"
    info = site / "xlm_quits-0.2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-quits\nVersion: 0.2.0\n")
    (info / "entry_points.txt").write_text("[xlm.plugins]\nquits = xlm_quits_plugin\n")
    (site / "xlm_quits_plugin.py").write_text(source)
    listed = xlm("plugins", "list", "--json", env=clean_env(PYTHONPATH=str(site)))
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["quits"]["status"] == "failed"
    assert rows["quits"]["error"] == f"plugin 'quits' (xlm-quits 0.2.0): {error}"
    assert rows["arlm"]["status"] == "ok"  # the other plugins still load
