"""Run-config resolution: defaults -> preset -> --config file -> --set, every mistake one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xlm_core.config import (
    DEFAULT_PRESET,
    dump_config,
    load_config_file,
    override_run_config,
    override_section,
    parse_section_sets,
    resolve_run_config,
)
from xlm_core.errors import XLMUserError
from xlm_core.plugins import get_registry

FAMILIES = [f.name for f in get_registry().families()]


def resolve(**kwargs):
    return resolve_run_config("arlm", **kwargs)


def test_default_preset_is_tiny_and_layers_apply_in_order(tmp_path):
    preset = get_registry().get("arlm").manifest.presets[DEFAULT_PRESET]
    base = resolve()
    assert base.preset == DEFAULT_PRESET
    assert base.model.d_model == preset["model"]["d_model"]
    assert base.task.name == "star-easy"

    file = tmp_path / "run.yaml"
    file.write_text("model:\n  d_model: 64\n  n_layers: 3\ntraining:\n  lr: 0.01\n")
    layered = resolve(config_file=file, sets=["training.lr=3e-4", "model.n_layers=2"])
    assert layered.model.d_model == 64  # from the file, over the preset
    assert layered.model.n_layers == 2  # --set over the file
    assert layered.training.lr == pytest.approx(
        3e-4
    )  # "3e-4" is text in YAML 1.1; pydantic parses it


def test_shorthands_come_before_sets():
    config = resolve(task="star-hard", max_steps=7, sets=["training.max_steps=9"])
    assert config.task.name == "star-hard"
    assert config.training.max_steps == 9


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_config_file_formats(tmp_path, suffix):
    body = {
        ".yaml": "training:\n  batch_size: 5\n",
        ".json": json.dumps({"training": {"batch_size": 5}}),
        ".toml": "[training]\nbatch_size = 5\n",
    }[suffix]
    file = tmp_path / f"c{suffix}"
    file.write_text(body)
    assert resolve(config_file=file).training.batch_size == 5


def test_printed_config_round_trips(tmp_path):
    config = resolve(preset="small", sets=["training.devices=0,1", "predictor.temperature=0"])
    for fmt, name in (("yaml", "c.yaml"), ("json", "c.json")):
        file = tmp_path / name
        file.write_text(dump_config(config, fmt))
        # The printed config names its preset, so resolving it alone gives the same run.
        again = resolve(config_file=file)
        assert again.dump() == config.dump()


def test_set_values_are_yaml_but_text_fields_stay_text():
    config = resolve(
        sets=[
            "task.name=123",
            "training.grad_clip=null",
            "training.betas=[0.8, 0.9]",
            "training.devices=2",
        ]
    )
    assert config.task.name == "123"
    assert config.training.grad_clip is None
    assert config.training.betas == (0.8, 0.9)
    assert config.training.devices == 2


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ["training.lrr=1"],
            "--set training.lrr=1: unknown key 'training.lrr' (did you mean 'training.lr'?)",
        ),
        (["trainin.lr=1"], "unknown key 'trainin' (did you mean 'training'?)"),
        (["model.d_modle=8"], "did you mean 'model.d_model'?"),
        (["model.zzz=1"], "valid keys under model: d_model"),
        (["training.lr=abc"], "--set training.lr=abc: invalid value for training.lr"),
        (["training.lr.x=1"], "'training.lr' is a value, not a section"),
        (["lr"], "--set expects KEY=VALUE"),
        (["training.precision=fp8"], "invalid value for training.precision"),
        (
            ["model.d_model=30"],
            "--set model.d_model=30: invalid value for model: d_model (30) must be divisible",
        ),
    ],
)
def test_bad_sets_are_one_line_errors(sets, expected):
    with pytest.raises(XLMUserError) as info:
        resolve(sets=sets)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_cross_field_checks_run_after_all_sets():
    config = resolve(
        sets=["model.d_model=30", "model.n_heads=3"]
    )  # 30 % 4 fails alone, not together
    assert (config.model.d_model, config.model.n_heads) == (30, 3)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(XLMUserError, match="config file not found"):
        resolve(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lr: [1\n")
    with pytest.raises(XLMUserError, match=r"bad.yaml: malformed YAML at line \d"):
        resolve(config_file=bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("training:\n  warmup: 3\n")
    with pytest.raises(
        XLMUserError,
        match=r"typo.yaml: unknown key 'training.warmup' \(did you mean 'training.warmup_steps'",
    ):
        resolve(config_file=typo)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"plugin": "somebody-else"}))
    with pytest.raises(XLMUserError, match="config for plugin 'somebody-else'"):
        resolve(config_file=other)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(XLMUserError, match="expected a mapping"):
        load_config_file(listed)


def test_unknown_plugin_and_preset():
    with pytest.raises(XLMUserError, match="unknown plugin 'nope'.*pip install xlm-nope"):
        resolve_run_config("nope")
    with pytest.raises(XLMUserError, match="unknown preset 'huge'"):
        resolve(preset="huge")


def test_overrides_of_a_saved_config_and_of_one_section():
    config = resolve()
    resumed = override_run_config(config, ["training.max_steps=11"])
    assert resumed.training.max_steps == 11 and resumed.model == config.model

    overrides = parse_section_sets(
        ["predictor.temperature=0", "predictor.top_k=5"], type(config.predictor), "predictor"
    )
    assert overrides == {"temperature": 0, "top_k": 5}
    settings = override_section(config.predictor, overrides, "predictor")
    assert (settings.temperature, settings.top_k) == (0, 5)
    with pytest.raises(XLMUserError, match="did you mean 'predictor.temperature'"):
        parse_section_sets(["predictor.temprature=0"], type(config.predictor), "predictor")
    with pytest.raises(XLMUserError, match="expects predictor.KEY=VALUE"):
        parse_section_sets(["training.lr=1"], type(config.predictor), "predictor")
    with pytest.raises(XLMUserError, match="invalid value for predictor.top_p"):
        override_section(config.predictor, {"top_p": 2.0}, "predictor")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_every_family_offers_the_standard_presets(family, preset):
    config = resolve_run_config(family, preset=preset)
    assert config.preset == preset
    if preset == "small":
        assert (config.model.d_model, config.model.n_layers, config.model.n_heads) == (768, 12, 12)


def test_resolution_never_imports_torch():
    code = (
        "import sys\n"
        "from xlm_core.config import resolve_run_config, dump_config\n"
        "dump_config(resolve_run_config('arlm', sets=['training.lr=1e-3']))\n"
        "try:\n"
        "    resolve_run_config('arlm', sets=['training.lrr=1'])\n"
        "except Exception:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_renamed_keys_keep_working_for_one_release(registry, make_fake_plugin, tmp_path, cli):
    from xlm_core.config import run_config_class, validate_run_config
    from xlm_core.errors import XLMDeprecationWarning
    from xlm_core.plugins import PredictorSettings

    class Renamed(PredictorSettings):
        renamed_keys = {"max_length": "max_new_tokens"}

    registry.register(make_fake_plugin("ren", settings=Renamed), name="ren")
    with pytest.warns(XLMDeprecationWarning, match="predictor.max_length is renamed predictor.max_new_tokens"):
        config = resolve_run_config("ren", sets=["predictor.max_length=5"])
    assert config.predictor.max_new_tokens == 5
    file = tmp_path / "old.yaml"
    file.write_text("predictor:\n  max_length: 7\n")
    with pytest.warns(XLMDeprecationWarning):
        assert resolve_run_config("ren", config_file=file).predictor.max_new_tokens == 7
        saved = config.dump()
        saved["predictor"] = {"max_length": 3}  # a checkpoint written before the rename
        cls = run_config_class(registry.get("ren"))
        assert validate_run_config(cls, saved, "old").predictor.max_new_tokens == 3
        assert Renamed(max_length=4).max_new_tokens == 4
        assert parse_section_sets(["predictor.max_length=2"], Renamed, "predictor") == {"max_new_tokens": 2}
    with pytest.raises(XLMUserError, match="both are set"):
        validate_run_config(cls, {**saved, "predictor": {"max_length": 3, "max_new_tokens": 4}}, "old")
    shown = cli("train", "--plugin", "ren", "--print-config", "--set", "predictor.max_length=5")
    assert shown.code == 0, shown.err
    assert shown.err.strip().splitlines() == [
        "warning: predictor.max_length is renamed predictor.max_new_tokens; the old name works until xlm-core 0.3.0"
    ]
    assert "max_new_tokens: 5" in shown.out and "max_length" not in shown.out
