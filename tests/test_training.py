"""The Lightning harness: optimiser groups, schedule, precision, metrics pooling and a tiny real run."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from safetensors.torch import load_file

from xlm_core.checkpoint import FINAL_DIR, LAST_CKPT, LIGHTNING_DIR, RUN_FILE, read_meta
from xlm_core.config import TrainingConfig, resolve_run_config
from xlm_core.data.tasks import build_task
from xlm_core.devices import cpu_native_bf16, native_bf16
from xlm_core.devices import lightning_precision as resolve_precision
from xlm_core.errors import XLMUserError
from xlm_core.metrics import Totals, token_matches
from xlm_core.plugins import get_registry
from xlm_core.runner import train
from xlm_core.training import lr_factor, param_groups

TINY = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "training.batch_size=8",
    "training.warmup_steps=1",
    "training.val_every=2",
    "eval.val_predict_limit=4",
    "eval.batch_size=4",
    "eval.limit=4",
]


def test_weight_decay_skips_norms_biases_and_embeddings():
    config = resolve_run_config("arlm", sets=TINY)
    task = build_task(config.task)
    model = get_registry().get("arlm").component("model")(config.model, task.tokenizer.vocab)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert all(p.ndim == 2 for p in decay["params"])
    assert any("embed" in n for n in skipped) and any("norm" in n for n in skipped)
    assert not any("embed" in n or "norm" in n for n in decayed)
    # Every parameter exactly once, tied head included.
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_schedule_warms_up_then_decays_to_the_floor():
    cosine = TrainingConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cosine) == pytest.approx(0.1)
    assert lr_factor(9, cosine) == pytest.approx(1.0)
    assert lr_factor(10, cosine) == pytest.approx(1.0)
    assert lr_factor(55, cosine) == pytest.approx(0.55)
    assert lr_factor(100, cosine) == pytest.approx(0.1)
    values = [lr_factor(s, cosine) for s in range(10, 101)]
    assert values == sorted(values, reverse=True)
    constant = TrainingConfig(max_steps=100, warmup_steps=0, schedule="constant")
    assert {lr_factor(s, constant) for s in range(100)} == {1.0}


def test_precision_resolution(monkeypatch):
    native = cpu_native_bf16()
    on_cpu = "bf16-mixed" if native else "32-true"
    assert resolve_precision(TrainingConfig(precision="auto", accelerator="cpu")) == on_cpu
    assert resolve_precision(TrainingConfig(precision="32")) == "32-true"
    expected = (
        "bf16-mixed" if (native_bf16() if torch.cuda.device_count() else native) else "32-true"
    )
    assert resolve_precision(TrainingConfig(precision="auto")) == expected
    # asked for on a CPU without native bf16 (emulated, slower than fp32): one line naming the setting
    monkeypatch.setattr("xlm_core.devices.cpu_native_bf16", lambda: False)
    cpu = {"accelerator": "cpu"}
    assert resolve_precision(TrainingConfig(precision="auto", **cpu)) == "32-true"
    with pytest.raises(
        XLMUserError, match="training.precision=bf16-mixed: this CPU has no native bf16"
    ):
        resolve_precision(TrainingConfig(precision="bf16-mixed", **cpu))
    monkeypatch.setattr("xlm_core.devices.cpu_native_bf16", lambda: True)
    assert resolve_precision(TrainingConfig(precision="bf16-mixed", **cpu)) == "bf16-mixed"


def test_nll_pools_tokens_not_batch_means():
    totals = Totals()
    # per-example losses: each batch weighs its size
    totals.add_loss(2, 1.0, n_tokens=10, nll_sum=10.0, metrics={"masked_ce": 1.0}, loss_weight=2)
    totals.add_loss(1, 4.0, n_tokens=2, nll_sum=8.0, metrics={"masked_ce": 4.0}, loss_weight=1)
    summary = totals.summary("bound")
    assert summary["nll"] == pytest.approx(18.0 / 12)  # a mean of batch means would say 2.5
    assert summary["ppl"] == pytest.approx(math.exp(1.5))
    assert summary["loss"] == pytest.approx(2.0) and summary["masked_ce"] == pytest.approx(2.0)
    assert Totals().summary("none")["nll"] is None
    assert token_matches([1, 2, 9], [1, 2, 3, 4]) == 2


def test_a_tiny_run_writes_checkpoints_logs_and_metrics(tmp_path):
    config = resolve_run_config(
        "arlm", sets=[*TINY, "training.max_steps=4", "training.ckpt_every=2", "training.ema=0.5"]
    )
    run_dir = tmp_path / "run"
    result = train(config, run_dir=run_dir, progress=False, num_samples=2)

    assert result.steps == 4 and result.checkpoint == run_dir / FINAL_DIR
    for name in (
        FINAL_DIR,
        "step-2",
        "step-4",
        RUN_FILE,
        "tokenizer.json",
        f"{LIGHTNING_DIR}/{LAST_CKPT}",
    ):
        assert (run_dir / name).exists(), name
    assert read_meta(run_dir / FINAL_DIR)["step"] == 4

    rows = list(csv.DictReader(open(next((run_dir / "logs").glob("version_*/metrics.csv")))))
    validation = [r for r in rows if r.get("val/loss")]
    assert len(validation) == 2  # at steps 2 and 4
    for key in ("val/nll", "val/seq_acc", "val/token_acc", "val/nfe"):
        assert validation[-1][key] != "", key
    assert any(r.get("train/loss") for r in rows)

    assert set(result.metrics) >= {
        "seq_acc",
        "token_acc",
        "nll",
        "nll_kind",
        "ppl",
        "nfe",
        "samples_per_s",
    }
    assert result.metrics["n_examples"] == 4 and result.metrics["nll_kind"] == "exact"
    assert len(result.samples) == 2 and result.samples[0].reference is not None

    # With EMA, final/ and step-4/ both hold the averaged weights, which differ from the raw ones.
    final = load_file(run_dir / FINAL_DIR / "model.safetensors")
    step4 = load_file(run_dir / "step-4" / "model.safetensors")
    assert final.keys() == step4.keys()
    assert all(torch.equal(final[k], step4[k]) for k in final)
    raw = torch.load(run_dir / LIGHTNING_DIR / LAST_CKPT, weights_only=False)["current_model_state"]
    assert any(not torch.equal(final[k], raw[f"model.{k}"]) for k in final)


def test_a_time_limit_stops_training_and_keeps_resumable_state(tmp_path):
    config = resolve_run_config(
        "arlm", sets=[*TINY, "training.max_steps=1000", "training.max_minutes=0.0001"]
    )
    result = train(config, run_dir=tmp_path / "run", progress=False, evaluate=False)
    assert 1 <= result.steps < 1000
    state = torch.load(tmp_path / "run" / LIGHTNING_DIR / LAST_CKPT, weights_only=False)
    assert state["global_step"] == result.steps
    assert read_meta(tmp_path / "run" / FINAL_DIR)["step"] == result.steps


def test_totals_reduce_across_processes():
    a, b = Totals(), Totals()
    a.add_loss(2, 1.0, n_tokens=10, nll_sum=10.0, metrics={"masked_ce": 1.0}, loss_weight=10)
    a.add_prediction([1, 2], nfe=3, steps=2, target=[1, 2])
    b.add_loss(1, 4.0, n_tokens=2, nll_sum=8.0, metrics={"masked_ce": 4.0}, loss_weight=2)
    b.add_prediction([5], nfe=1, steps=1, target=[1, 2])
    layouts = []

    def sum_across(numbers):  # what strategy.reduce(sum) does, for two processes
        layouts.append(len(numbers))
        return [x + y for x, y in zip(numbers_of[0], numbers_of[1], strict=True)]

    numbers_of = []
    for totals in (a, b):
        totals.reduced(lambda numbers: numbers_of.append(numbers) or numbers)
    merged = a.reduced(sum_across)
    assert layouts[0] == len(numbers_of[1])
    one = Totals()
    for totals in (a, b):  # the same as adding everything in one process
        one.add_loss(
            totals.examples,
            totals.loss_sum / totals.loss_weight,
            totals.tokens,
            totals.nll_sum,
            {"masked_ce": totals.metric_sums["masked_ce"] / totals.examples},
            loss_weight=totals.loss_weight,
        )
    one.add_prediction([1, 2], nfe=3, steps=2, target=[1, 2])
    one.add_prediction([5], nfe=1, steps=1, target=[1, 2])
    assert merged.summary("bound") == pytest.approx(one.summary("bound"))
    assert merged.summary("bound")["seq_acc"] == 0.5
