"""The CPU thread policy the ``xlm`` command sets before torch is imported.

Two defaults of the OpenMP runtime behind torch hurt on the machines
researchers actually use (laptops, shared servers, containers):

* torch starts one thread per core it sees, and in a container limited by a CPU
  quota it still sees every core of the host. The thread count here starts at the
  smaller of the cores this process may run on and the container's quota.
* The thread count stays fixed while other processes come and go. A parallel
  region waits for its slowest thread, so when another process holds one of the
  cores, every region waits for the thread that shares that core: with torch's
  spinning workers both processes slow down severalfold, and sleeping workers
  (``OMP_WAIT_POLICY=PASSIVE``) only halve the loss while making every region
  slower to start. So the command *adapts* the count instead: every
  :data:`ADAPT_EVERY` seconds of training or decoding (:func:`adapt_threads`, called
  by the training loop and by every ``predict``) it measures from ``/proc/stat`` how
  much of its cores other processes used, and runs on the cores they leave free
  (at least one). An idle machine keeps every core and OpenMP's default waiting
  (a short spin, then sleep), the fastest setting there.

Only what the user has not set changes: ``OMP_NUM_THREADS=N`` in the environment
fixes the count (nothing adapts) and ``OMP_WAIT_POLICY`` is theirs. Where the count
cannot adapt (no ``/proc/stat``, a CPU quota below the cores, or a count the user
set) the policy falls back to ``OMP_WAIT_POLICY=PASSIVE``, the better of the fixed
choices next to a competitor. Distributed CPU runs are split further by Lightning
(threads per process = cores / processes), and the adapted count never exceeds the
count a process starts with. Importing xlm_core as a library changes nothing; the
policy is the command's (and the benchmarks', which call
:func:`apply_thread_policy` themselves).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import MutableMapping
from pathlib import Path

#: Seconds between two looks at the machine while training or decoding.
ADAPT_EVERY = 2.0


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
    """Set the thread count (and, where it cannot adapt, passive waiting) where the user has not;
    return what was set. Adapting starts here when ``environ`` is the process's own."""
    global _watch, _next_look
    own = environ is None or environ is os.environ
    environ = os.environ if environ is None else environ
    chosen = {"OMP_NUM_THREADS": str(usable_cores())}
    watch = CoreWatch.for_this_process() if own and "OMP_NUM_THREADS" not in environ else None
    if watch is None:
        chosen["OMP_WAIT_POLICY"] = "PASSIVE"
    applied = {name: value for name, value in chosen.items() if name not in environ}
    environ.update(applied)
    if own:
        _watch = watch
        _next_look = time.monotonic() + 1.0  # the first look measures at least a second
    return applied


class CoreWatch:
    """How much of a set of CPUs other processes used between two looks (Linux ``/proc``).

    Busy time comes from the per-CPU lines of ``/proc/stat``, this process's own from
    ``/proc/self/stat`` (all its threads); what is left is the others'. Both count
    clock ticks, so a look costs two small file reads.
    """

    def __init__(self, cpus: set[int], proc: Path = Path("/proc")):
        self.cpus, self.proc = cpus, proc
        self.tick = os.sysconf("SC_CLK_TCK")
        self.last = self._look()

    @classmethod
    def for_this_process(cls) -> CoreWatch | None:
        """A watch over the CPUs this process may use, or None where it cannot work or would
        mislead (no ``/proc/stat``; a CPU quota smaller than those CPUs, which host-wide
        figures say nothing about)."""
        try:
            cpus = os.sched_getaffinity(0)
        except AttributeError:  # not on Linux
            return None
        quota = cgroup_cpu_quota()
        if quota is not None and quota < len(cpus):
            return None
        try:
            return cls(set(cpus))
        except (OSError, ValueError, IndexError):
            return None

    def _look(self) -> tuple[float, int, int]:
        """(monotonic seconds, busy ticks of the watched CPUs, this process's ticks)."""
        busy = 0
        seen = 0
        for line in (self.proc / "stat").read_text().splitlines():
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in self.cpus:
                continue
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            busy += user + nice + system + irq + softirq + steal
            seen += 1
        if seen != len(self.cpus):
            raise ValueError("/proc/stat does not list every CPU this process may use")
        fields = (self.proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
        return time.monotonic(), busy, own

    def others_busy(self) -> float:
        """Cores' worth of the watched CPUs other processes kept busy since the last look."""
        (t0, busy0, own0), (t1, busy1, own1) = self.last, self._look()
        self.last = (t1, busy1, own1)
        seconds = max(t1 - t0, 1e-6)
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / self.tick / seconds)

    def free_cores(self) -> int:
        """The watched CPUs the others leave free, at least one: ``round(cpus - others)``."""
        return max(1, math.floor(len(self.cpus) - self.others_busy() + 0.5))


_watch: CoreWatch | None = None  # set by apply_thread_policy when the count may adapt
_ceiling: int | None = None  # the count torch started with: adapting never goes above it
_next_look = 0.0


def adapt_threads() -> int | None:
    """Run torch on the cores other processes leave free; return the count it set, None when
    nothing changed. Cheap when no look is due (a clock read). Call it from the thread that
    runs torch's work: the count is that thread's OpenMP setting."""
    global _ceiling, _next_look
    if _watch is None or time.monotonic() < _next_look:
        return None
    import torch

    _next_look = time.monotonic() + ADAPT_EVERY
    if _ceiling is None:
        _ceiling = torch.get_num_threads()
    try:
        wanted = min(_ceiling, _watch.free_cores())
    except (OSError, ValueError, IndexError):  # /proc changed under us: skip this look
        return None
    if wanted == torch.get_num_threads():
        return None
    torch.set_num_threads(wanted)
    return wanted
