"""training.compile: the model compiled for training only, the same checkpoints, and a machine that
cannot compile told so in one line before anything is written."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from xlm_core import compiling
from xlm_core.checkpoint import FINAL_DIR
from xlm_core.config import TrainingConfig, resolve_run_config
from xlm_core.errors import XLMUserError
from xlm_core.runner import train

TINY = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "training.batch_size=8",
    "training.warmup_steps=1",
    "training.max_steps=2",
    "training.val_every=2",
    "eval.val_predict_limit=0",
    "eval.batch_size=8",
    "training.precision=32",
]


def test_compile_is_off_unless_asked_for():
    assert TrainingConfig().compile is False
    assert resolve_run_config("arlm", sets=["training.compile=true"]).training.compile is True


def test_a_compile_failure_becomes_one_line_naming_the_setting():
    failure = torch._dynamo.exc.TorchDynamoException(
        "InvalidCxxCompiler: No working C++ compiler found\n\nSet TORCHDYNAMO_VERBOSE=1 ..."
    )
    with pytest.raises(XLMUserError) as caught, compiling.failures_as_user_errors(True):
        raise failure
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("training.compile=true: ") and "InvalidCxxCompiler" in message
    assert "training.compile=false" in message
    with pytest.raises(torch._dynamo.exc.TorchDynamoException), compiling.failures_as_user_errors(False):
        raise failure  # compile off: nothing of ours to explain


def test_a_compiled_run_trains_and_writes_the_checkpoint_an_eager_run_writes(tmp_path, monkeypatch):
    # dynamo and AOT autograd as in a real run, without inductor's C++ build of every kernel (tens of
    # seconds; the test below and benchmarks/step_profile.py run inductor itself)
    compile_for_tests = functools.partial(torch.compile, backend="aot_eager")
    monkeypatch.setattr(compiling.torch, "compile", compile_for_tests)
    eager, compiled = (
        train(
            resolve_run_config("arlm", sets=[*TINY, f"training.compile={flag}"]),
            run_dir=tmp_path / flag,
            progress=False,
            evaluate=False,
        )
        for flag in ("false", "true")
    )
    assert compiled.steps == eager.steps == 2
    a, b = (load_file(r.checkpoint / "model.safetensors") for r in (eager, compiled))
    assert a.keys() == b.keys()  # no "_orig_mod." anywhere: the compiled wrapper is kept beside
    for key in a:  # the same batches and init: the same training, up to the fused kernels' rounding
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
    assert (tmp_path / "true" / FINAL_DIR).is_dir()


def test_a_machine_that_cannot_compile_is_told_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    sets = [arg for item in [*TINY, "training.compile=true"] for arg in ("--set", item)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLM_")}
    # a compiler that does not exist, and an empty kernel cache that cannot stand in for it
    env.update(CXX=str(tmp_path / "no-such-c++"), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "xlm_core.cli.main", "train", "--plugin", "arlm", "--out", str(out), *sets],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "training.compile=true" in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert not out.exists()
