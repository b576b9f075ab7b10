"""The CPU thread policy the ``xlm`` command sets before torch is imported.

Two defaults of the OpenMP runtime behind torch hurt on the machines
researchers actually use (laptops, shared servers, containers):

* Idle OpenMP workers spin, waiting for the next parallel region. On a machine
  where another process also wants the cores, the spinning workers take its time
  slices and both slow down severalfold. ``OMP_WAIT_POLICY=PASSIVE`` makes them
  sleep instead; on an idle machine it costs little (benchmarks/threads.py).
* torch starts one thread per core it sees, and in a container limited by a CPU
  quota it still sees every core of the host. The thread count here is the
  smaller of the cores this process may run on and the container's quota.

Only variables the user has not set are changed: ``OMP_WAIT_POLICY=ACTIVE`` or
``OMP_NUM_THREADS=N`` in the environment win. Distributed CPU runs are split
further by Lightning (threads per process = cores / processes). Importing
xlm_core as a library changes nothing; the policy is the command's.
"""

from __future__ import annotations

import math
import os
from collections.abc import MutableMapping
from pathlib import Path


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota if there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by a cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None without one."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 else quota_us / period_us


def apply_thread_policy(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the OpenMP wait policy and thread count where the user has not; return what was set."""
    environ = os.environ if environ is None else environ
    chosen = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(usable_cores())}
    applied = {name: value for name, value in chosen.items() if name not in environ}
    environ.update(applied)
    return applied
