"""Choosing hardware: ``--device`` for generate/eval, bf16 detection, per-row generators' device."""

from __future__ import annotations

import subprocess

import pytest
import torch

from xlm_core.checkpoint import make_meta, task_info, write_checkpoint
from xlm_core.config import TrainingConfig, resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.devices import lightning_precision as resolve_precision
from xlm_core.devices import native_bf16
from xlm_core.nn.sampling import _generator_device
from xlm_core.plugins import get_registry


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = resolve_run_config("arlm", sets=["model.d_model=32", "model.n_layers=2"])
    family = get_registry().get("arlm")
    task = build_task(config.task)
    return write_checkpoint(
        tmp_path_factory.mktemp("devices") / "final",
        model=family.component("model")(config.model, task.tokenizer.vocab),
        tokenizer=task.tokenizer,
        meta=make_meta(config, family, task_info(task)),
    )


def test_eval_and_generate_run_on_the_device_asked_for(checkpoint, cli):
    for args in (["eval", "--limit", "2"], ["generate", "-n", "1"]):
        done = cli(*args, "--checkpoint", str(checkpoint), "--device", "cpu", "--json")
        assert done.code == 0, done.err


@pytest.mark.parametrize("device", ["cuda:7", "gpu0"])
@pytest.mark.parametrize("command", ["eval", "generate"])
def test_a_device_this_machine_lacks_is_one_line_and_exit_2(checkpoint, cli, command, device):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has an eighth GPU")
    done = cli(command, "--checkpoint", str(checkpoint), "--device", device)
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1, done.err
    assert f"device {device!r}" in done.err and "Traceback" not in done.err


def test_a_per_row_generator_stays_on_the_models_gpu():
    assert _generator_device("cuda:1") == torch.device("cuda:1")
    assert _generator_device(torch.device("cpu")) == torch.device("cpu")


def test_bf16_is_asked_natively_without_initialising_cuda_here(monkeypatch):
    # Seen from a launcher process on a V100: CUDA present, not initialised, bf16 only emulated.
    asked = []

    def ask(command, **kwargs):
        asked.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="False\n")

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: pytest.fail("asked here"))
    monkeypatch.setattr(subprocess, "run", ask)
    native_bf16.cache_clear()
    try:
        assert resolve_precision(TrainingConfig(precision="auto")) == "32-true"
        assert resolve_precision(TrainingConfig(precision="auto")) == "32-true"
    finally:
        native_bf16.cache_clear()
    assert len(asked) == 1 and "including_emulation=False" in asked[0][2]  # asked once, then kept


def test_auto_precision_on_a_cpu_depends_on_native_bf16_and_model_size(monkeypatch):
    from types import SimpleNamespace

    from xlm_core.devices import CPU_BF16_MIN_MATMUL, inference_autocast, matmul_size

    star64 = matmul_size(SimpleNamespace(d_model=64, d_ff=None), 30)  # 64 x 256
    text128 = matmul_size(SimpleNamespace(d_model=128, d_ff=None), 4096)  # the vocabulary is wider
    reference = matmul_size(SimpleNamespace(d_model=384, d_ff=None), 30)  # 384 x 1536
    assert (star64, text128, reference) == (64 * 256, 128 * 4096, 384 * 1536)
    assert matmul_size(SimpleNamespace(d_model=64, d_ff=2048)) == 64 * 2048
    assert matmul_size(SimpleNamespace(width=64)) is None  # a plugin without d_model: unknown
    cpu = TrainingConfig(precision="auto", accelerator="cpu")
    monkeypatch.setattr("xlm_core.devices.cpu_native_bf16", lambda: True)
    assert resolve_precision(cpu, CPU_BF16_MIN_MATMUL) == "bf16-mixed"
    assert resolve_precision(cpu, text128) == resolve_precision(cpu, reference) == "bf16-mixed"
    assert resolve_precision(cpu, star64) == "32-true"  # small: casts cost more than bf16 saves
    assert resolve_precision(cpu, None) == "bf16-mixed"
    assert isinstance(inference_autocast(torch.device("cpu"), "auto", reference), torch.autocast)
    assert not isinstance(inference_autocast(torch.device("cpu"), "auto", star64), torch.autocast)
    assert not isinstance(inference_autocast(torch.device("cpu"), "32", reference), torch.autocast)
    monkeypatch.setattr("xlm_core.devices.cpu_native_bf16", lambda: False)
    assert resolve_precision(cpu, reference) == "32-true"
    assert not isinstance(inference_autocast(torch.device("cpu"), "auto", reference), torch.autocast)


def test_auto_decodes_narrow_passes_in_fp32_on_a_cpu(monkeypatch):
    from xlm_core.devices import CPU_BF16_MIN_PASS, inference_autocast

    cpu, reference = torch.device("cpu"), 384 * 1536
    monkeypatch.setattr("xlm_core.devices.cpu_native_bf16", lambda: True)
    big, small = CPU_BF16_MIN_PASS, CPU_BF16_MIN_PASS - 1
    assert isinstance(inference_autocast(cpu, "auto", reference, pass_size=big), torch.autocast)
    assert not isinstance(inference_autocast(cpu, "auto", reference, pass_size=small), torch.autocast)
    # asked for by name, bf16 is kept whatever the pass
    assert isinstance(inference_autocast(cpu, "bf16-mixed", reference, pass_size=1), torch.autocast)


@pytest.mark.parametrize(
    ("family", "sets", "width"),
    [
        ("arlm", (), "one"),  # one position a step with the KV cache
        ("arlm", ("predictor.kv_cache=false",), "row"),
        ("mdlm", (), "row"),  # no declaration: the whole row
        ("bdlm", ("model.block_size=2",), "block"),
    ],
)
def test_decoding_passes_declare_their_width_to_the_precision_policy(
    family, sets, width, untrained_pipeline, monkeypatch
):
    from xlm_core.devices import CPU_BF16_MIN_PASS

    config = resolve_run_config(
        family, sets=["model.d_model=256", "model.n_heads=4", "model.n_layers=1", *sets]
    )
    pipe = untrained_pipeline(family, config)
    settings = pipe.settings()
    row = pipe.shape.prompt_length + pipe.shape.target_length + 1  # BOS or EOS: one more
    per_row = {"one": 1, "row": row, "block": 2}[width]
    assert pipe.positions_per_pass(settings) == per_row
    monkeypatch.setattr("xlm_core.devices.cpu_native_bf16", lambda: True)
    layer = 256 * 1024  # d_model x d_ff: big enough for bf16 training (CPU_BF16_MIN_MATMUL)
    rows_needed = -(-CPU_BF16_MIN_PASS // (per_row * layer))  # the fewest rows decoded in bf16
    assert isinstance(pipe.autocast(settings, rows_needed), torch.autocast)
    if rows_needed > 1:
        assert not isinstance(pipe.autocast(settings, rows_needed - 1), torch.autocast)
    assert isinstance(pipe.autocast(), torch.autocast)  # scoring: whole batches of sequences


def test_devices_auto_asks_lightning_for_one_device_not_every_gpu(monkeypatch, tmp_path):
    # Lightning's own "auto" would start DDP on every GPU of the node and multiply the
    # global batch at the same learning rate; several devices are asked for explicitly.
    import lightning as L

    from xlm_core.config import resolve_run_config
    from xlm_core.runner import build_trainer

    seen = {}

    class Recorder:
        num_devices = num_nodes = 1

        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(L, "Trainer", Recorder)
    build_trainer(resolve_run_config("arlm", sets=["training.devices=auto"]), tmp_path, [], progress=False)
    assert seen["devices"] == 1
    build_trainer(resolve_run_config("arlm", sets=["training.devices=4"]), tmp_path, [], progress=False)
    assert seen["devices"] == 4
