"""The two stages through the CLI: stage 2 starts from stage 1 and ends in one checkpoint; bad starts are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xlm_core.checkpoint import FINAL_DIR, WEIGHTS_FILE
from xlm_core.config import resolve_run_config
from xlm_core.runner import train

# a 2-step run at the kit's size
TINY = [
    *"model.d_model=32 model.n_layers=2 model.n_heads=2 model.learned_positions=0 model.latent_size=8".split(),
    *"model.energy_samples=2 model.target_samples=4 training.max_steps=2 training.batch_size=8".split(),
    *"training.warmup_steps=1 training.val_every=2".split(),
    *"eval.val_predict_limit=2 eval.batch_size=4 eval.limit=2".split(),
]
STAGE_2 = "model.stage=generator"


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def one_line(result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, (
        result.err
    )
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def stage_1(tmp_path_factory) -> Path:
    """A 2-step autoencoder run on star-easy."""
    run_dir = tmp_path_factory.mktemp("stage1") / "ae"
    train(resolve_run_config("calm", sets=TINY), run_dir=run_dir, progress=False, evaluate=False)
    return run_dir


def test_stage_two_starts_from_stage_one_and_its_checkpoint_generates_alone(stage_1, cli, tmp_path):
    out = tmp_path / "gen"
    result = cli(
        "train",
        "--plugin",
        "calm",
        "--init-from",
        str(stage_1),
        "--out",
        str(out),
        *sets(*TINY, STAGE_2),
    )
    assert result.code == 0, result.err
    recorded = json.loads((out / FINAL_DIR / "config.json").read_text())["init_from"]
    assert recorded["new"] and all(name.startswith("generator.") for name in recorded["new"])
    before = load_file(str(stage_1 / FINAL_DIR / WEIGHTS_FILE))
    after = load_file(str(out / FINAL_DIR / WEIGHTS_FILE))
    for name, tensor in before.items():  # the autoencoder was frozen, and travels in the checkpoint
        assert torch.equal(after[name], tensor), name
    assert any(name.startswith("generator.") for name in after)
    shown = cli("generate", "--checkpoint", str(out), "--num-samples", "2", "--json")
    assert shown.code == 0, shown.err
    rows = json.loads(shown.out)
    assert all(row["counters"]["decoder_passes"] == row["steps"] == row["nfe"] for row in rows)


def test_chunk_size_below_one_is_one_line(cli, tmp_path):
    one_line(
        cli("train", "--plugin", "calm", "--out", str(tmp_path / "x"), *sets("model.chunk_size=0")),
        "chunk_size",
    )


def test_stage_two_without_a_stage_one_checkpoint_is_one_line(cli, tmp_path):
    out = tmp_path / "refused"
    one_line(
        cli("train", "--plugin", "calm", "--out", str(out), *sets(*TINY, STAGE_2)),
        "--init-from",
        "stage",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "change, fragments",
    [
        (["model.chunk_size=2"], ["model.chunk_size=4 there, 2 here"]),
        (["model.latent_size=16"], ["model.latent_size=8 there, 16 here"]),
        (
            ["task.name=star-hard"],
            ["tokenizer"],
        ),  # its node labels are not in the checkpoint's vocabulary
    ],
    ids=["chunk-size", "latent", "tokenizer"],
)
def test_a_stage_one_checkpoint_of_another_autoencoder_or_tokenizer_is_one_line(
    stage_1, cli, tmp_path, change, fragments
):
    out = tmp_path / "refused"
    args = sets(*TINY, STAGE_2, *change)
    one_line(
        cli("train", "--plugin", "calm", "--init-from", str(stage_1), "--out", str(out), *args),
        *fragments,
    )
    assert not out.exists()


def test_another_familys_checkpoint_is_one_line(cli, tmp_path):
    arlm = tmp_path / "arlm"
    arlm_sets = [
        s for s in TINY if not s.startswith(("model.latent", "model.energy", "model.target"))
    ]
    train(resolve_run_config("arlm", sets=arlm_sets), run_dir=arlm, progress=False, evaluate=False)
    result = cli(
        "train",
        "--plugin",
        "calm",
        "--init-from",
        str(arlm),
        "--out",
        str(tmp_path / "x"),
        *sets(*TINY, STAGE_2),
    )
    one_line(result, "'arlm' model, not a CALM one")
