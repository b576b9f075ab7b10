"""End to end through the CLI (train -> generate -> eval -> resume) and the Pipeline API."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

import xlm_core
from xlm_core.checkpoint import FINAL_DIR, make_meta, read_meta, task_info, write_checkpoint
from xlm_core.config import resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.errors import XLMUserError
from xlm_core.pipeline import MASK_GLYPH
from xlm_core.plugins import get_registry

TINY = [
    "training.precision=32",  # exact comparisons across batch shapes: bf16 rounding differs
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "training.batch_size=8",
    "training.warmup_steps=1",
    "eval.val_predict_limit=3",
    "eval.batch_size=4",
    "eval.limit=3",
]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-step CLI run shared by the tests below (training is the slow part)."""
    from xlm_core.cli.main import run

    out = tmp_path_factory.mktemp("cli") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            run(
                [
                    "train",
                    "--plugin",
                    "arlm",
                    "--max-steps",
                    "3",
                    "--out",
                    str(out),
                    "--accelerator",
                    "cpu",
                    *sets(*TINY),
                ]
            )
        except SystemExit as exc:
            assert exc.code in (0, None)
    (out / "stdout.txt").write_text(printed.getvalue())
    return out


def test_train_prints_samples_metrics_and_checkpoint(trained):
    printed = (trained / "stdout.txt").read_text()
    assert "samples:" in printed and "reference:" in printed
    assert "test (3 examples): seq_acc" in printed
    assert f"checkpoint: {trained / FINAL_DIR}" in printed
    assert (trained / FINAL_DIR / "model.safetensors").is_file()
    meta = read_meta(trained / FINAL_DIR)
    assert meta["run_config"]["training"]["max_steps"] == 3
    assert meta["run_config"]["training"]["accelerator"] == "cpu"


def test_generate_json_is_deterministic_per_seed(trained, cli):
    first = cli(
        "generate", "--checkpoint", str(trained), "--json", "--num-samples", "2", "--seed", "3"
    )
    assert first.code == 0, first.err
    rows = json.loads(first.out)
    assert len(rows) == 2
    for row in rows:
        assert {"prompt", "text", "ids", "steps", "nfe", "reference"} <= set(row)
        assert row["steps"] >= len(row["ids"]) and row["nfe"] >= 1
    again = cli(
        "generate", "--checkpoint", str(trained), "--json", "--num-samples", "2", "--seed", "3"
    )
    assert json.loads(again.out) == rows


def test_generate_with_prompts_and_steps(trained, cli):
    result = cli(
        "generate",
        "--checkpoint",
        str(trained / FINAL_DIR),
        "--prompt",
        "1 2 3 4",
        "--prompt",
        "5 6",
        "--num-samples",
        "2",
        "--show-steps",
        "--set",
        "predictor.temperature=0",
    )
    assert result.code == 0, result.err
    assert result.out.count("prompt:    1 2 3 4") == 2 and result.out.count("prompt:    5 6") == 2
    assert "step 1:" in result.out and "generated:" in result.out
    shown = cli("generate", "--checkpoint", str(trained), "--json", "-n", "1", "--show-steps")
    row = json.loads(shown.out)[0]
    assert len(row["history"]) == row["steps"]


def test_eval_json(trained, cli):
    result = cli(
        "eval", "--checkpoint", str(trained), "--split", "validation", "--limit", "5", "--json"
    )
    assert result.code == 0, result.err
    metrics = json.loads(result.out)
    assert metrics["n_examples"] == 5 and metrics["split"] == "validation"
    for key in (
        "seq_acc",
        "token_acc",
        "nll",
        "ppl",
        "nfe",
        "samples_per_s",
        "mean_length",
        "data_mean_length",
    ):
        assert isinstance(metrics[key], float), key
    assert metrics["nll_kind"] == "exact"
    assert metrics["ppl"] == pytest.approx(math.exp(metrics["nll"]))
    text = cli("eval", "--checkpoint", str(trained), "--limit", "2")
    assert text.code == 0 and "seq_acc" in text.out


def test_resume_continues_the_run(trained, cli):
    result = cli("train", "--resume", str(trained), "--max-steps", "5")
    assert result.code == 0, result.err
    assert "done: 5 steps" in result.out
    assert read_meta(trained / FINAL_DIR)["step"] == 5
    assert len(list((trained / "logs").glob("version_*"))) == 2


def test_print_config_does_no_work(tmp_path, cli):
    result = cli(
        "train",
        "--plugin",
        "arlm",
        "--print-config",
        "--out",
        str(tmp_path / "x"),
        "--set",
        "training.lr=0.002",
    )
    assert result.code == 0
    assert "lr: 0.002" in result.out and "plugin: arlm" in result.out
    assert not (tmp_path / "x").exists()


def test_pipeline_samples_do_not_depend_on_batch_size(trained):
    pipeline = xlm_core.load(trained, device="cpu")
    whole = pipeline.generate(num_samples=5, seed=1)
    pipeline.run_config.eval.batch_size = 2
    split = pipeline.generate(num_samples=5, seed=1)
    assert [r.ids for r in whole] == [r.ids for r in split]
    metrics = pipeline.evaluate("test", 4, progress=False)
    pipeline.run_config.eval.batch_size = 3
    again = pipeline.evaluate("test", 4, progress=False)
    for key in ("seq_acc", "token_acc", "nfe", "mean_length"):
        assert metrics[key] == again[key], key
    assert metrics["nll"] == pytest.approx(again["nll"], rel=1e-5)


def test_pipeline_score(trained):
    pipeline = xlm_core.load(trained, device="cpu")
    examples = list(pipeline.task.examples("test")[:3])
    scored = pipeline.score(examples)
    assert scored["n_examples"] == 3 and scored["n_tokens"] == sum(
        len(e.target_ids) + 1 for e in examples
    )
    assert scored["nll"] == pytest.approx(
        pipeline.evaluate("test", 3, progress=False)["nll"], rel=1e-5
    )
    pairs = [
        (pipeline.tokenizer.decode(e.prompt_ids), pipeline.tokenizer.decode(e.target_ids))
        for e in examples
    ]
    assert pipeline.score(pairs)["nll"] == pytest.approx(scored["nll"], rel=1e-5)
    with pytest.raises(XLMUserError, match="prompted"):
        pipeline.score(["1 2 3"])
    with pytest.raises(XLMUserError, match="did you mean 'predictor.temperature'"):
        pipeline.generate(num_samples=1, temprature=0)
    assert pipeline.render([pipeline.vocab.mask_id, examples[0].target_ids[0]]).startswith(
        MASK_GLYPH + " "
    )


def test_text_task_generates_unconditionally(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(f"the quick brown fox {i} jumps over the lazy dog" for i in range(60))
    )
    config = resolve_run_config(
        "arlm",
        sets=[
            *TINY,
            "task.name=text",
            f"task.path={corpus}",
            "task.block_size=16",
            "task.vocab_size=300",
            f"task.cache_dir={tmp_path / 'cache'}",
            "predictor.max_new_tokens=6",
        ],
    )
    family = get_registry().get("arlm")
    task = build_task(config.task)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    checkpoint = write_checkpoint(
        tmp_path / "final",
        model=model,
        tokenizer=task.tokenizer,
        meta=make_meta(config, family, task_info(task)),
    )
    pipeline = xlm_core.load(checkpoint, device="cpu")
    samples = pipeline.generate(num_samples=3, seed=0)
    assert len(samples) == 3 and all(s.prompt == "" and s.reference is None for s in samples)
    assert all(len(s.ids) <= 6 for s in samples)
    metrics = pipeline.evaluate("validation", 2, progress=False)
    assert "seq_acc" not in metrics and metrics["nll_kind"] == "exact" and metrics["nll"] > 0
