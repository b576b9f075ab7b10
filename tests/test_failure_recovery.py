"""Runs never lose work: --overwrite, --resume, locks, atomic state, signals, safe loading, full disks.

Each test names the defect of issue 11 it guards against; each failed on the code before the fix.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlm_core.checkpoint import (
    FINAL_DIR,
    LAST_CKPT,
    LIGHTNING_DIR,
    RUN_FILE,
    WEIGHTS_FILE,
    read_meta,
)
from xlm_core.config import resolve_run_config
from xlm_core.errors import XLMUserError
from xlm_core.rundir import LOCK_FILE, REPLACED_DIR, RunDirectory
from xlm_core.runner import train

TINY = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "training.batch_size=8",
    "training.warmup_steps=1",
    "training.val_every=2",
    "eval.val_predict_limit=2",
    "eval.batch_size=4",
    "eval.limit=2",
]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A real 4-step run (with lightning/last.ckpt) that the tests copy before changing."""
    config = resolve_run_config("arlm", sets=[*TINY, "training.max_steps=4"])
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(config, run_dir=run_dir, progress=False, evaluate=False)
    return run_dir


@pytest.fixture
def run(finished, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


class Boom(Exception):
    pass


class FailAtStep:
    """A callback that raises once training reaches ``step``."""

    def __new__(cls, step: int):
        from lightning.pytorch.callbacks import Callback

        class _Fail(Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step >= step:
                    raise Boom(f"failed at step {trainer.global_step}")

        return _Fail()


# -- --overwrite ------------------------------------------------------------------------------


def test_overwrite_restores_the_old_run_when_the_new_one_fails_before_saving(run):
    before = snapshot(run)
    config = resolve_run_config(
        "arlm", sets=[*TINY, "training.max_steps=50", "training.val_every=40"]
    )
    with pytest.raises(Boom):
        train(config, run_dir=run, overwrite=True, progress=False, callbacks=[FailAtStep(3)])
    assert snapshot(run) == before
    assert not (run / REPLACED_DIR).exists() and not (run / LOCK_FILE).exists()


def test_overwrite_removes_the_old_run_once_the_new_one_has_saved(run):
    old_tokens = read_meta(run / FINAL_DIR)["run_config"]["training"]["max_steps"]
    config = resolve_run_config("arlm", sets=[*TINY, "training.max_steps=6"])
    with pytest.raises(Boom):  # fails after its first saved state (step 2)
        train(config, run_dir=run, overwrite=True, progress=False, callbacks=[FailAtStep(3)])
    assert not (run / REPLACED_DIR).exists()
    assert not (run / FINAL_DIR).exists()  # the old final/ went with the old run
    assert torch.load(run / LIGHTNING_DIR / LAST_CKPT, weights_only=True)["global_step"] == 2
    assert old_tokens == 4


def test_overwrite_with_a_bad_value_leaves_the_run_alone(run, cli):
    before = snapshot(run)
    result = cli(
        "train",
        "--plugin",
        "arlm",
        "--out",
        str(run),
        "--overwrite",
        *sets(*TINY, "training.betas=[2,3]"),
    )
    assert_one_line_error(result, "training.betas")
    assert snapshot(run) == before


def test_out_that_is_the_working_directory_or_holds_other_files_is_refused(
    tmp_path, cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("mine")
    for out in (".", str(tmp_path), str(tmp_path.parent)):
        result = cli("train", "--plugin", "arlm", "--out", out, "--overwrite", *sets(*TINY))
        assert_one_line_error(result, "working directory")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / RUN_FILE).write_text("{}")
    (mixed / "notes.txt").write_text("keep me")
    result = cli("train", "--plugin", "arlm", "--out", str(mixed), "--overwrite", *sets(*TINY))
    assert_one_line_error(result, "not part of an xlm run", "notes.txt")
    assert (mixed / "notes.txt").read_text() == "keep me"


def test_an_interrupted_overwrite_is_recovered_at_the_next_start(run):
    # A kill -9 after the old run was set aside and before the new one saved anything.
    aside = run / REPLACED_DIR
    aside.mkdir()
    for entry in list(run.iterdir()):
        if entry != aside:
            entry.rename(aside / entry.name)
    (run / RUN_FILE).write_text("{}")  # the new run had written its run.json
    with RunDirectory(run):
        pass
    assert (run / FINAL_DIR / WEIGHTS_FILE).is_file() and not aside.exists()
    assert read_meta(run, RUN_FILE)["run_config"]["training"]["max_steps"] == 4


# -- --resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("model.d_model=64", "model.d_model"),
        ("task.name=star-medium", "task.name"),
        ("training.seed=3", "training.seed"),
    ],
)
def test_resume_refuses_identity_changes_and_writes_nothing(run, cli, change, key):
    before = snapshot(run)
    result = cli("train", "--resume", str(run), "--set", change)
    assert_one_line_error(result, f"--resume cannot change {key}")
    assert snapshot(run) == before
    assert (
        cli("train", "--resume", str(run), "--max-steps", "6").code == 0
    )  # a plain resume still works


def test_resume_may_change_the_schedule_and_records_it_once_it_has_trained(run):
    from xlm_core.cli.train import _resumed_config

    config = _resumed_config(
        run, None, ["training.max_steps=6", "training.lr=0.0005", "eval.limit=1"]
    )
    seen = {}

    from lightning.pytorch.callbacks import Callback

    class Spy(Callback):
        def on_train_batch_start(self, trainer, *args):
            seen.setdefault("lr", trainer.optimizers[0].param_groups[0]["lr"])

    train(config, run_dir=run, resume=True, progress=False, evaluate=False, callbacks=[Spy()])
    saved = read_meta(run, RUN_FILE)["run_config"]["training"]
    assert saved["max_steps"] == 6 and saved["lr"] == 0.0005
    # the restored optimiser would say 1e-3 x the schedule; the resumed config wins
    assert seen["lr"] <= 0.0005 + 1e-12


def test_resume_that_fails_before_saving_keeps_run_json(run):
    from xlm_core.cli.train import _resumed_config

    before = (run / RUN_FILE).read_bytes()
    config = _resumed_config(run, None, ["training.max_steps=50", "training.val_every=40"])
    with pytest.raises(Boom):
        train(config, run_dir=run, resume=True, progress=False, callbacks=[FailAtStep(6)])
    assert (run / RUN_FILE).read_bytes() == before


# -- one writer -------------------------------------------------------------------------------


def test_a_running_run_locks_its_directory(run, cli):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK_FILE).write_text(f"{os.uname().nodename} {sleeper.pid}\n")
        before = snapshot(run)
        result = cli("train", "--resume", str(run), "--max-steps", "6")
        assert_one_line_error(result, "in use by a running xlm train", str(sleeper.pid))
        result = cli("train", "--plugin", "arlm", "--out", str(run), "--overwrite", *sets(*TINY))
        assert_one_line_error(result, "in use")
        assert snapshot(run) == before
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(run, cli):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_FILE).write_text(f"{os.uname().nodename} {dead.pid}\n")
    result = cli("train", "--resume", str(run), "--max-steps", "6")
    assert result.code == 0, result.err
    assert "taking over" in result.err and str(dead.pid) in result.err
    assert not (run / LOCK_FILE).exists()


# -- atomic, safe state -----------------------------------------------------------------------


def test_last_ckpt_is_written_next_to_itself_and_a_failed_write_keeps_the_old_one(
    run, monkeypatch, tmp_path
):
    from xlm_core.resume_state import RunStateIO

    target = run / LIGHTNING_DIR / LAST_CKPT
    before = target.read_bytes()
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda a, b: (moves.append((Path(a), Path(b))), real_replace(a, b))
    )
    RunStateIO().save_checkpoint({"x": torch.ones(2)}, target)
    assert [a.parent for a, _ in moves] == [target.parent] and moves[0][1] == target

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_replace(run / LIGHTNING_DIR / LAST_CKPT, tmp_path / "keep")
    (tmp_path / "keep").rename(target)
    target.write_bytes(before)
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(XLMUserError, match="No space left on device"):
        RunStateIO().save_checkpoint({"x": torch.ones(2)}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == [LAST_CKPT]


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(run):
    (run / ".step-2.k3j4.tmp").mkdir()  # as tempfile.mkdtemp named them
    (run / ".step-4.tmp-123-abcdef").mkdir()
    (run / LIGHTNING_DIR / ".last.ckpt.tmp-99-abcdef").write_bytes(b"half")
    with RunDirectory(run):
        pass
    assert not list(run.glob(".step-*")) and not list((run / LIGHTNING_DIR).glob(".*"))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_crafted_last_ckpt_is_refused_without_running_it(run, cli, tmp_path):
    _Payload.marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "evil": _Payload()}, run / LIGHTNING_DIR / LAST_CKPT)
    result = cli("train", "--resume", str(run), "--max-steps", "6")
    assert_one_line_error(result, "safe load refuses")
    assert not _Payload.marker.exists()
    assert (run / FINAL_DIR / WEIGHTS_FILE).is_file()


def test_a_truncated_last_ckpt_is_one_line_and_keeps_the_checkpoints(run, cli):
    state = run / LIGHTNING_DIR / LAST_CKPT
    state.write_bytes(state.read_bytes()[:300])
    final = snapshot(run / FINAL_DIR)
    result = cli("train", "--resume", str(run), "--max-steps", "6")
    assert_one_line_error(result, "corrupt or truncated")
    assert snapshot(run / FINAL_DIR) == final


def test_a_full_disk_is_one_line_and_keeps_earlier_checkpoints(tmp_path, cli, monkeypatch):
    import safetensors.torch

    real = safetensors.torch.save_model
    calls = []

    def fill_up(model, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(model, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_model", fill_up)
    out = tmp_path / "run"
    result = cli(
        "train",
        "--plugin",
        "arlm",
        "--out",
        str(out),
        *sets(*TINY, "training.max_steps=4", "training.ckpt_every=2"),
    )
    assert_one_line_error(result, "No space left on device")
    assert (out / "step-2" / WEIGHTS_FILE).is_file()
    assert not list(out.glob(".step-*"))


def test_an_unwritable_out_is_one_line(tmp_path, cli, monkeypatch):
    out = tmp_path / "readonly"
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    result = cli(
        "train", "--plugin", "arlm", "--out", str(out), *sets(*TINY, "training.max_steps=2")
    )
    assert_one_line_error(result, "cannot write to --out", "Read-only file system")


# -- non-finite loss --------------------------------------------------------------------------


def test_a_non_finite_loss_stops_training_naming_the_step(tmp_path, monkeypatch):
    from xlm_core.training import XLMModule

    real_step = XLMModule.training_step

    def diverge(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step >= 2 else loss

    monkeypatch.setattr(XLMModule, "training_step", diverge)
    config = resolve_run_config(
        "arlm",
        sets=[*TINY, "training.max_steps=8", "training.val_every=4", "training.ckpt_every=4"],
    )
    run_dir = tmp_path / "run"
    with pytest.raises(XLMUserError, match="non-finite at step 3"):
        train(config, run_dir=run_dir, progress=False)
    assert not (run_dir / FINAL_DIR).exists() and not (run_dir / "step-4").exists()
    assert not (run_dir / LIGHTNING_DIR / LAST_CKPT).exists()


# -- signals ----------------------------------------------------------------------------------


def _train_in_background(out: Path) -> subprocess.Popen:
    # val_every=1 saves a state every step, so "last.ckpt exists" means training is under way.
    args = ["train", "--plugin", "arlm", "--out", str(out), "--max-steps", "100000"]
    args += sets(*TINY, "training.val_every=1", "eval.val_predict_limit=0")
    code = "import sys; from xlm_core.cli.main import run; run(sys.argv[1:])"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLM_")}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_resumable_state_and_says_how_to_resume(tmp_path, signum, cli):
    out = tmp_path / "run"
    process = _train_in_background(out)
    try:
        deadline = time.monotonic() + 120
        while not (out / LIGHTNING_DIR / LAST_CKPT).exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert f"xlm train --resume {out}" in err and "Traceback" not in err
    step = torch.load(out / LIGHTNING_DIR / LAST_CKPT, weights_only=True)["global_step"]
    assert step >= 1 and not (out / LOCK_FILE).exists()
    resumed = cli("train", "--resume", str(out), "--max-steps", str(step + 2))
    assert resumed.code == 0, resumed.err
    assert f"done: {step + 2} steps" in resumed.out


# -- values that pass a type check but fail later -------------------------------------------


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("training.betas=[2,3]", "training.betas"),
        ("training.betas=[0.9,1.0]", "training.betas"),
        ("training.max_minutes=.inf", "training.max_minutes"),
        ("training.lr=.nan", "training.lr"),
        ("model.d_ff=0", "model.d_ff"),
        ("model.d_ff=-4", "model.d_ff"),
    ],
)
def test_values_that_would_fail_later_are_refused_at_parse_time(tmp_path, cli, item, key):
    out = tmp_path / "run"
    result = cli("train", "--plugin", "arlm", "--out", str(out), "--set", item)
    assert_one_line_error(result, key)
    assert not out.exists()


def test_precision_32_on_the_command_line(cli):
    result = cli("train", "--plugin", "arlm", "--precision", "32", "--print-config")
    assert result.code == 0, result.err
    assert "precision: '32'" in result.out


def test_generation_beyond_memory_is_refused(run, cli):
    result = cli(
        "generate", "--checkpoint", str(run), "--set", "predictor.max_new_tokens=100000000"
    )
    assert_one_line_error(result, "predictor.max_new_tokens=100000000", "use at most")
    result = cli("generate", "--checkpoint", str(run), "--num-samples", "1000000000")
    assert_one_line_error(result, "--num-samples")


def test_json_output_has_no_bare_nan(capsys):
    from xlm_core.cli._common import print_json

    print_json({"nll": 1000.0, "ppl": float("inf"), "rows": [{"x": float("nan")}]})
    text = capsys.readouterr().out
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert data["ppl"] is None and data["non_finite"] == {"ppl": "inf"}
    assert data["rows"][0] == {"x": None, "non_finite": {"x": "nan"}}


def test_checkpoint_files_follow_the_umask(tmp_path):
    from xlm_core import files

    config = resolve_run_config("arlm", sets=TINY)
    from xlm_core.checkpoint import make_meta, task_info, write_checkpoint
    from xlm_core.data.tasks import build_task
    from xlm_core.plugins import get_registry

    family = get_registry().get("arlm")
    task = build_task(config.task)
    model = family.component("model")(config.model, task.tokenizer.vocab)
    previous = os.umask(0o002)
    files._umask = None
    try:
        final = write_checkpoint(
            tmp_path / FINAL_DIR,
            model=model,
            tokenizer=task.tokenizer,
            meta=make_meta(config, family, task_info(task)),
        )
    finally:
        os.umask(previous)
        files._umask = None
    assert final.stat().st_mode & 0o777 == 0o775
    assert (final / WEIGHTS_FILE).stat().st_mode & 0o777 == 0o664
    assert (final / "config.json").stat().st_mode & 0o777 == 0o664


def test_weights_that_do_not_match_the_config_name_the_tensor(run, cli):
    meta_file = run / FINAL_DIR / "config.json"
    meta = json.loads(meta_file.read_text())
    meta["run_config"]["model"]["d_model"] = 64
    meta_file.write_text(json.dumps(meta))
    result = cli("generate", "--checkpoint", str(run))
    assert_one_line_error(result, "has shape (", "but the checkpoint's config builds (")
