"""--init-from: a new run starts from another checkpoint's weights and tokenizer, or is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xlm_core.checkpoint import FINAL_DIR, RUN_FILE, CheckpointRecord, load_weights
from xlm_core.config import resolve_run_config
from xlm_core.data.tokenizers import Tokenizer
from xlm_core.errors import XLMUserError
from xlm_core.init_from import InitSource, grouped, initialise
from xlm_core.plugins import get_registry
from xlm_core.runner import train

# a 2-step run at the kit's size, with the same backbone in every family whatever their tiny presets add
TINY = [
    *"model.d_model=32 model.n_layers=2 model.n_heads=2 model.learned_positions=0".split(),
    *"model.token_shift=false training.max_steps=2 training.batch_size=8".split(),
    *"training.warmup_steps=1 training.val_every=2".split(),
    *"eval.val_predict_limit=2 eval.batch_size=4 eval.limit=2".split(),
]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def arlm_run(tmp_path_factory) -> Path:
    """A 2-step ARLM run on star-easy: the teacher every test starts from."""
    run_dir = tmp_path_factory.mktemp("teacher") / "arlm"
    train(resolve_run_config("arlm", sets=TINY), run_dir=run_dir, progress=False, evaluate=False)
    return run_dir


def _model(family: str, run_dir: Path) -> torch.nn.Module:
    config = resolve_run_config(family, sets=TINY).model
    record = CheckpointRecord.read(run_dir / FINAL_DIR)
    vocab = Tokenizer.from_file(run_dir / FINAL_DIR).vocab
    assert record.plugin.name in ("arlm", family)
    return get_registry().get(family).component("model")(config, vocab)


@pytest.mark.parametrize("family", ["bdlm", "mdlm"])
def test_an_arlm_initialises_another_family_tensor_for_tensor(family, arlm_run):
    arlm = _model("arlm", arlm_run)
    load_weights(arlm, arlm_run / FINAL_DIR)
    model = _model(family, arlm_run)
    report = initialise(model, InitSource.find(arlm_run))  # a run directory means its final/
    assert not report.new and not report.skipped
    assert report.plugin == "arlm" and report.step == 2
    for name, tensor in arlm.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    text = report.describe()
    assert "loaded  " in text and "backbone.blocks.{0-1}.qkv.weight (96, 32)" in text


@pytest.mark.parametrize("family", ["bdlm", "mdlm"])
def test_xlm_train_init_from_records_it_and_says_what_it_loaded(family, arlm_run, cli, tmp_path, caplog):
    caplog.set_level("INFO")
    out = tmp_path / family
    result = cli(
        "train", "--plugin", family, "--init-from", str(arlm_run / FINAL_DIR), "--out", str(out), *sets(*TINY)
    )
    assert result.code == 0, result.err
    # printed before training starts, with Lightning's own messages (stderr)
    assert f"init from {arlm_run / FINAL_DIR} (arlm, step 2)" in caplog.text
    assert "new     0 tensors" in caplog.text and "skipped 0 tensors" in caplog.text
    recorded = json.loads((out / RUN_FILE).read_text())["init_from"]
    assert recorded["checkpoint"] == str(arlm_run / FINAL_DIR) and recorded["plugin"] == "arlm"
    assert json.loads((out / FINAL_DIR / "config.json").read_text())["init_from"] == recorded
    assert (out / FINAL_DIR / "tokenizer.json").read_text() == (arlm_run / FINAL_DIR / "tokenizer.json").read_text()


def test_new_and_skipped_tensors_are_listed_with_their_shapes(arlm_run):
    # a time-conditioned MDLM has an adaLN and a time embedding the ARLM lacks
    config = resolve_run_config(
        "mdlm", sets=[*TINY, "model.time_conditioning=true", "model.nelbo_estimator=time"]
    ).model
    model = get_registry().get("mdlm").component("model")(config, Tokenizer.from_file(arlm_run / FINAL_DIR).vocab)
    report = initialise(model, InitSource.find(arlm_run), config)
    assert ("backbone.blocks.0.ada.weight", (192, 32)) in report.new
    assert "backbone.blocks.{0-1}.ada.weight (192, 32)" in report.describe()
    assert not report.skipped
    # the other way round: the checkpoint's extra tensors are skipped, the rest loaded
    assert report.loaded and all(name not in dict(report.new) for name, _ in report.loaded)


def _one_line(result, *fragments):
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "change, fragments",
    [
        (["model.d_model=64", "model.n_heads=2"], ["backbone.embed.weight", "model.d_model=32 there, 64 here"]),
        (["model.d_ff=64"], ["backbone.blocks.0.mlp.0.weight", "model.d_ff=None there, 64 here"]),
        (["task.name=star-hard"], ["star-hard"]),  # its node labels are not in the checkpoint's vocabulary
    ],
    ids=["width", "mlp", "tokenizer"],
)
def test_another_backbone_or_tokenizer_is_refused_before_anything_is_written(change, fragments, arlm_run, cli, tmp_path):
    out = tmp_path / "refused"
    result = cli("train", "--plugin", "bdlm", "--init-from", str(arlm_run), "--out", str(out), *sets(*TINY, *change))
    _one_line(result, *fragments)
    assert not out.exists()


def test_a_deeper_model_keeps_its_extra_layers_as_new_tensors(arlm_run):
    config = resolve_run_config("bdlm", sets=[*TINY, "model.n_layers=3"]).model
    model = get_registry().get("bdlm").component("model")(config, Tokenizer.from_file(arlm_run / FINAL_DIR).vocab)
    report = initialise(model, InitSource.find(arlm_run), config)
    assert {name for name, _ in report.new} == {n for n, _ in model.named_parameters() if ".blocks.2." in n}


def test_an_untied_head_cannot_be_merged_into_a_tied_one(arlm_run, tmp_path):
    from xlm_core.checkpoint import make_meta, write_checkpoint
    from xlm_core.data.tasks import build_task

    untied = resolve_run_config("arlm", sets=[*TINY, "model.tie_embeddings=false"])
    task = build_task(untied.task)
    model = get_registry().get("arlm").component("model")(untied.model, task.tokenizer.vocab)
    meta = make_meta(untied, get_registry().get("arlm"), {"kind": task.kind, "prompt_length": 1, "target_length": 1})
    write_checkpoint(tmp_path / "untied", model=model, tokenizer=task.tokenizer, meta=meta)
    tied = _model("bdlm", arlm_run)
    with pytest.raises(XLMUserError, match="tie_embeddings=false"):
        initialise(tied, InitSource.find(tmp_path / "untied"))


def test_a_task_that_names_another_tokenizer_is_refused(arlm_run, tmp_path):
    other = Tokenizer.word_level(["a", "b", "c"])
    other.save(tmp_path)
    source = InitSource.find(arlm_run)
    source.check_tokenizer(Tokenizer.from_file(arlm_run / FINAL_DIR))  # its own: fine
    with pytest.raises(XLMUserError, match="tokenizer the task names"):
        source.check_tokenizer(Tokenizer.from_file(arlm_run / FINAL_DIR), asked_for=str(tmp_path / "tokenizer.json"))


def test_resume_and_init_from_do_not_mix(arlm_run, cli):
    _one_line(cli("train", "--resume", str(arlm_run), "--init-from", str(arlm_run)), "--init-from", "--resume")
    with pytest.raises(XLMUserError, match="drop --init-from"):
        InitSource.find(arlm_run, resume=True)


def test_a_missing_checkpoint_is_one_line(cli, tmp_path):
    _one_line(cli("train", "--plugin", "bdlm", "--init-from", str(tmp_path / "nope")), "not found")


def test_layers_fold_into_ranges():
    items = [(f"blocks.{i}.w", (2, 2)) for i in (0, 1, 2)] + [("blocks.5.w", (2, 2)), ("head", (3,))]
    assert grouped(items) == ["blocks.{0,1,2,5}.w (2, 2)", "head (3,)"]
    assert grouped(items[:3]) == ["blocks.{0-2}.w (2, 2)"]


def test_a_checkpoint_that_shares_no_tensor_is_refused_before_anything_is_written(arlm_run, cli, tmp_path):
    # the ARLM's weights under other names: what a CALM checkpoint (generator.backbone.*) is to a BDLM
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(arlm_run / FINAL_DIR, other)
    weights = other / "model.safetensors"
    save_file({f"generator.{name}": t for name, t in load_file(weights).items()}, weights)
    out = tmp_path / "refused"
    result = cli("train", "--plugin", "bdlm", "--init-from", str(other), "--out", str(out), *sets(*TINY))
    _one_line(result, "shares no tensor", "generator.backbone.", "this model's: backbone.")
    assert not out.exists()
