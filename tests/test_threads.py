"""The thread policy the `xlm` command sets before torch is imported, unless the user has."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from xlm_core import threads
from xlm_core.threads import CoreWatch, apply_thread_policy, cgroup_cpu_quota, usable_cores

PROBE = """
import json, os, sys
from xlm_core.cli.main import run
try:
    run(["--version"])
except SystemExit:
    pass
import torch
from xlm_core import threads
print(json.dumps({"wait": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads(),
                  "adapts": threads._watch is not None}))
"""


def probe(env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adapting reads /proc")
def test_the_command_runs_a_thread_per_usable_core_and_adapts(clean_env):
    env = {k: v for k, v in clean_env().items() if not k.startswith("OMP_")}
    assert probe(env) == {"wait": None, "threads": usable_cores(), "adapts": True}


def test_the_users_settings_win(clean_env):
    env = {k: v for k, v in clean_env().items() if not k.startswith("OMP_")}
    fixed = {"wait": "ACTIVE", "threads": 1, "adapts": False}
    assert probe({**env, "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}) == fixed
    # a count the user fixed does not adapt, so waiting falls back to passive
    assert probe({**env, "OMP_NUM_THREADS": "1"}) == {
        "wait": "PASSIVE",
        "threads": 1,
        "adapts": False,
    }
    assert apply_thread_policy({"OMP_NUM_THREADS": "3"}) == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_a_cgroup_quota_caps_the_thread_count_and_stops_adapting(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    monkeypatch.setattr("xlm_core.threads.cgroup_cpu_quota", lambda: 0.5)
    assert usable_cores() == 1
    # host-wide /proc figures say nothing about a quota: the count stays fixed, waiting passive
    assert CoreWatch.for_this_process() is None
    environ = dict(os.environ)
    environ.pop("OMP_NUM_THREADS", None)
    environ.pop("OMP_WAIT_POLICY", None)
    monkeypatch.setattr(threads.os, "environ", environ)
    monkeypatch.setattr(threads, "_watch", "untouched")
    assert apply_thread_policy() == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    assert threads._watch is None


class FakeProc:
    """A /proc with two CPUs (0 and 1) and a clock, advanced by hand."""

    def __init__(self, root, monkeypatch):
        self.root, self.now = root, 100.0
        (root / "self").mkdir()
        self.busy, self.own = [0, 0], 0
        monkeypatch.setattr(threads.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)  # 100 ticks a second
        self.write()

    def write(self):
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        # user nice system idle iowait irq softirq steal guest guest_nice: busy split over fields
        lines += [
            f"cpu{i} {b // 2} 0 {b - b // 2} 5000 7 0 0 0 0 0" for i, b in enumerate(self.busy)
        ]
        (self.root / "stat").write_text("\n".join([*lines, "intr 1 2 3", "ctxt 9"]) + "\n")
        fields = (
            ["S"] + ["0"] * 10 + [str(self.own // 2), str(self.own - self.own // 2)] + ["0"] * 30
        )
        (self.root / "self" / "stat").write_text("1234 (python (x)) " + " ".join(fields) + "\n")

    def run(self, seconds, cpu0, cpu1, own):
        """Advance the clock; each CPU busy for the given share of it, ``own`` ticks of them ours."""
        self.now += seconds
        self.busy = [
            self.busy[0] + int(cpu0 * 100 * seconds),
            self.busy[1] + int(cpu1 * 100 * seconds),
        ]
        self.own += own
        self.write()


def test_core_watch_counts_what_others_kept_busy(tmp_path, monkeypatch):
    proc = FakeProc(tmp_path, monkeypatch)
    watch = CoreWatch({0, 1}, proc=tmp_path)
    proc.run(2.0, 1.0, 1.0, own=400)  # both cores busy, all of it ours
    assert watch.others_busy() == 0.0
    proc.run(2.0, 1.0, 1.0, own=200)  # both busy, one of them ours: another process holds a core
    assert watch.others_busy() == pytest.approx(1.0)
    proc.run(2.0, 0.5, 1.0, own=200)
    assert watch.free_cores() == 2  # others hold half a core: round(1.5) is 2
    proc.run(2.0, 0.8, 1.0, own=200)
    assert watch.free_cores() == 1
    assert CoreWatch({1}, proc=tmp_path).last[1] == proc.busy[1]  # only the watched CPUs count
    with pytest.raises(ValueError, match="every CPU"):
        CoreWatch({0, 5}, proc=tmp_path)


def test_adapt_threads_follows_the_free_cores_within_the_starting_count(tmp_path, monkeypatch):
    proc = FakeProc(tmp_path, monkeypatch)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_watch", CoreWatch({0, 1}, proc=tmp_path))
    monkeypatch.setattr(threads, "_ceiling", 2)
    monkeypatch.setattr(threads, "_next_look", 0.0)
    try:
        torch.set_num_threads(2)
        proc.run(2.0, 1.0, 1.0, own=200)  # a competitor holds a core
        assert threads.adapt_threads() == 1 and torch.get_num_threads() == 1
        proc.run(1.0, 1.0, 1.0, own=200)  # the competitor left
        assert threads.adapt_threads() is None  # no look is due yet
        proc.run(1.0, 1.0, 0.0, own=100)
        assert threads.adapt_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setattr(threads, "_ceiling", 1)  # never more than the count it started with
        proc.run(2.0, 0.0, 0.0, own=0)
        assert threads.adapt_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores to compare one thread with two")
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_the_thread_count_does_not_change_a_training_step_or_its_logits(dropout):
    # Adapting the count between steps must not change results: the forward pass, the loss and
    # every gradient of a model big enough for torch to split its work come out bit for bit the same,
    # dropout masks included (drawn from the same seed).
    from xlm_core.nn.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(4096, d_model=128, n_layers=2, n_heads=4, causal=True, dropout=dropout)
    ids = torch.randint(0, 4096, (16, 64))
    before = torch.get_num_threads()
    results = []
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            torch.manual_seed(1)
            model.zero_grad()
            logits = model.logits(model(ids))
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()
            )
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters()])
            results.append((logits.detach(), loss.detach(), grads))
    finally:
        torch.set_num_threads(before)
    (l2, loss2, g2), (l1, loss1, g1) = results
    assert torch.equal(l2, l1) and torch.equal(loss2, loss1) and torch.equal(g2, g1)
