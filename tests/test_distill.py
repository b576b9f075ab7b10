"""``xlm distill`` and the ``distilled`` task: a teacher's outputs as training data, the original
task's validation and test splits, provenance, determinism and one-line errors.

The teachers are untrained (random weights written as checkpoints): distillation's mechanics do
not depend on how good the teacher is, and training one would only slow the tests down.
"""

from __future__ import annotations

import json

import pytest
import torch

import xlm_core
from xlm_core.checkpoint import make_meta, task_info, write_checkpoint
from xlm_core.config import DistilledTaskConfig, TaskConfig, resolve_run_config
from xlm_core.data.distilled import RECORD_FILE, TRAIN_FILE
from xlm_core.data.tasks import build_task
from xlm_core.errors import XLMUserError
from xlm_core.plugins import get_registry

TINY = [
    "training.precision=32",
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "training.batch_size=4",
    "eval.batch_size=8",
    "eval.limit=4",
    "eval.val_predict_limit=2",
]


def teacher(directory, plugin="arlm", sets=()):
    """An untrained checkpoint of ``plugin`` with the tiny backbone, on the task ``sets`` name."""
    config = resolve_run_config(plugin, sets=[*TINY, *sets])
    family = get_registry().get(plugin)
    task = build_task(config.task)
    torch.manual_seed(0)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    meta = make_meta(config, family, task_info(task))
    return write_checkpoint(directory, model=model, tokenizer=task.tokenizer, meta=meta)


@pytest.fixture(scope="module")
def star_teacher(tmp_path_factory):
    return teacher(tmp_path_factory.mktemp("teacher") / "final")


def distill(cli, checkpoint, out, *extra):
    return cli("distill", "--teacher", str(checkpoint), "--task", "star-easy", "--out", str(out), *extra)


def lines(directory):
    return (directory / TRAIN_FILE).read_text().splitlines()


def test_writes_the_teachers_answers_with_provenance(star_teacher, tmp_path, cli):
    out = tmp_path / "data"
    result = distill(cli, star_teacher, out, "--limit", "20", "--seed", "3", "--set", "predictor.temperature=0")
    assert result.code == 0, result.err
    assert f"to {out}" in result.out and "--task distilled" in result.out
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["kind"] == "prompted" and record["original_task"] == {"name": "star-easy", "seed": 0}
    assert record["teacher"]["checkpoint"] == str(star_teacher.resolve())
    assert record["teacher"]["plugin"]["name"] == "arlm" and record["teacher"]["plugin"]["version"]
    assert record["settings"]["temperature"] == 0.0 and record["overrides"] == {"temperature": 0.0}
    assert (record["seed"], record["limit"]) == (3, 20) and record["created"].endswith("+00:00")
    assert record["examples"] + record["empty_outputs"] == 20
    rows = [json.loads(line) for line in lines(out)]
    original = build_task(TaskConfig(name="star-easy"))
    train_prompts = [list(e.prompt_ids) for e in original.examples("train")[:20]]
    assert all(row["prompt_ids"] in train_prompts for row in rows)
    # The teacher's greedy answers, exactly what generate gives for those prompts.
    pipeline = xlm_core.load(star_teacher, device="cpu")
    first = pipeline.generate([original.tokenizer.decode(train_prompts[0])], temperature=0.0)[0]
    if first.ids:
        assert rows[0]["target_ids"] == first.ids
    assert (out / "tokenizer.json").read_text() == (star_teacher / "tokenizer.json").read_text()


def test_the_same_seed_gives_the_same_data(star_teacher, tmp_path, cli):
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert distill(cli, star_teacher, tmp_path / name, "--limit", "12", "--seed", seed).code == 0
        runs[name] = lines(tmp_path / name)
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]


def test_students_train_on_it_and_are_measured_on_the_real_references(star_teacher, tmp_path, cli):
    out = tmp_path / "data"
    assert distill(cli, star_teacher, out, "--limit", "16").code == 0
    task = build_task(DistilledTaskConfig(path=str(out)))
    original = build_task(TaskConfig(name="star-easy"))
    assert task.kind == "prompted" and task.shape == original.shape
    assert len(task.examples("train")) == json.loads((out / RECORD_FILE).read_text())["examples"]
    assert task.examples("test")[:5] == original.examples("test")[:5]
    assert task.examples("validation")[0] == original.examples("validation")[0]
    run = tmp_path / "student"
    sets = [arg for item in TINY for arg in ("--set", item)]
    trained = cli("train", "--plugin", "mdlm", "--task", "distilled", "--set", f"task.path={out}",
                  "--max-steps", "2", "--out", str(run), *sets)
    assert trained.code == 0, trained.err
    metrics = json.loads(cli("eval", "--checkpoint", str(run), "--json", "--limit", "3").out)
    assert metrics["task"] == "distilled" and metrics["n_examples"] == 3 and "seq_acc" in metrics


def test_a_text_teacher_samples_unconditionally(tmp_path, cli):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the quick brown fox {i} jumps over the lazy dog" for i in range(60)))
    text = ["task.name=text", f"task.path={corpus}", "task.block_size=12", "task.vocab_size=300",
            f"task.cache_dir={tmp_path / 'cache'}"]
    checkpoint = teacher(tmp_path / "teacher", sets=text)
    out = tmp_path / "data"
    result = cli("distill", "--teacher", str(checkpoint), "--task", "text", "--out", str(out), "--limit", "6")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in lines(out)]
    assert 0 < len(rows) <= 6 and all(r["prompt_ids"] == [] and len(r["target_ids"]) <= 12 for r in rows)
    task = build_task(DistilledTaskConfig(path=str(out)))
    original = build_task(TaskConfig(**json.loads((out / RECORD_FILE).read_text())["original_task"]))
    assert task.kind == "text" and list(task.examples("test")) == list(original.examples("test"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "star-hard"], "was trained on 'star-easy'; use --task star-easy"),
        (["--task", "text"], "was trained on 'star-easy'"),
        (["--set", "predictor.temprature=0"], "did you mean 'predictor.temperature'"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_input_is_one_line_exit_2(star_teacher, tmp_path, cli, args, message):
    out = tmp_path / "data"
    base = ["distill", "--teacher", str(star_teacher), "--out", str(out)]
    result = cli(*base, *(["--task", "star-easy"] if "--task" not in args else []), *args)
    assert result.code == 2 and message in result.err
    assert len(result.err.strip().splitlines()) == 1 and not out.exists()


def test_existing_output_and_missing_teacher_are_refused(star_teacher, tmp_path, cli):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = distill(cli, star_teacher, out)
    assert result.code == 2 and "already exists and is not empty" in result.err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    result = distill(cli, tmp_path / "nope", tmp_path / "fresh")
    assert result.code == 2 and "not found" in result.err and not (tmp_path / "fresh").exists()


def test_a_broken_distilled_directory_is_named_in_one_line(star_teacher, tmp_path, cli):
    with pytest.raises(XLMUserError, match="needs task.path=DIR"):
        build_task(DistilledTaskConfig())
    with pytest.raises(XLMUserError, match="no such directory"):
        build_task(DistilledTaskConfig(path=str(tmp_path / "none")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(XLMUserError, match=f"holds no {RECORD_FILE}; write it with `xlm distill`"):
        build_task(DistilledTaskConfig(path=str(tmp_path / "empty")))
    out = tmp_path / "data"
    assert distill(cli, star_teacher, out, "--limit", "4").code == 0
    with open(out / TRAIN_FILE, "a") as f:
        f.write('{"prompt_ids": [1], "target_ids": "x"}\n')
    task = build_task(DistilledTaskConfig(path=str(out)))
    n = len(lines(out))
    with pytest.raises(XLMUserError, match=rf"{TRAIN_FILE}: line {n}: not an example"):
        task.examples("train")
    (out / RECORD_FILE).write_text("{")
    with pytest.raises(XLMUserError, match="is corrupt or truncated"):
        build_task(DistilledTaskConfig(path=str(out)))
