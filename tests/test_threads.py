"""The thread policy the `xlm` command sets before torch is imported, unless the user has."""

from __future__ import annotations

import json
import subprocess
import sys

from xlm_core.threads import apply_thread_policy, cgroup_cpu_quota, usable_cores

PROBE = """
import json, os, sys
from xlm_core.cli.main import run
try:
    run(["--version"])
except SystemExit:
    pass
import torch
print(json.dumps({"wait": os.environ.get("OMP_WAIT_POLICY"), "threads": torch.get_num_threads()}))
"""


def probe(env):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_command_sets_passive_waiting_and_a_thread_per_usable_core(clean_env):
    env = {k: v for k, v in clean_env().items() if not k.startswith("OMP_")}
    assert probe(env) == {"wait": "PASSIVE", "threads": usable_cores()}


def test_the_users_settings_win(clean_env):
    env = {k: v for k, v in clean_env().items() if not k.startswith("OMP_")}
    assert probe({**env, "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}) == {"wait": "ACTIVE", "threads": 1}
    assert apply_thread_policy({"OMP_NUM_THREADS": "3"}) == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_a_cgroup_quota_caps_the_thread_count(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    monkeypatch.setattr("xlm_core.threads.cgroup_cpu_quota", lambda: 0.5)
    assert usable_cores() == 1
