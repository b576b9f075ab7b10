"""The run directory: which directories a run may write into, one writer at a time, no lost runs.

``xlm train --out DIR`` fills DIR with ``run.json``, ``tokenizer.json``,
``final/``, ``step-<N>/``, ``lightning/last.ckpt`` and the logs, and two
bookkeeping entries:

``.lock``
    host and PID of the process writing DIR. A second ``xlm train`` into DIR
    (or ``--resume`` of a run that is still going) is refused; a lock whose
    process has died is taken over with a warning.
``.replaced/``
    with ``--overwrite``, the old run, moved aside (a rename, nothing is
    copied) once every check has passed. It is deleted when the new run has
    saved its first resumable state, and moved back if the new run fails
    before that.

Torch-free: the CLI checks ``--out`` here before torch is imported.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from xlm_core.checkpoint import CONFIG_FILE, FINAL_DIR, LAST_CKPT, LIGHTNING_DIR, LOGS_DIR, RUN_FILE
from xlm_core.errors import XLMUserError
from xlm_core.files import is_temporary, remove_stale

LOCK_FILE = ".lock"
REPLACED_DIR = ".replaced"
#: Set while a run trains, so that processes Lightning launches for other devices join the same directory.
RUN_DIR_ENV = "XLM_RUN_DIR"
_RUN_ENTRIES = {
    RUN_FILE,
    "tokenizer.json",
    FINAL_DIR,
    LIGHTNING_DIR,
    LOGS_DIR,
    "tensorboard",
    LOCK_FILE,
    REPLACED_DIR,
}
_STEP = re.compile(r"step-\d+")


def is_main_process() -> bool:
    """Whether this is the first process of a (possibly distributed) run, as launchers announce it.

    Read from the environment (torchrun, Lightning's launcher, SLURM) so that the
    CLI can decide before torch is imported which process checks and prepares the
    run directory: any non-zero rank, local rank or node rank is a helper process.
    """
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key, "0").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


def default_run_dir(plugin: str, task: str, root: str | os.PathLike = "runs") -> Path:
    return Path(root) / f"{plugin}-{task}-{time.strftime('%Y%m%d-%H%M%S')}"


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"step-{step}"


def foreign_entries(out: Path) -> list[str]:
    """Names in ``out`` that no xlm run writes (a user's files that ``--overwrite`` must not delete)."""
    return sorted(
        child.name
        for child in out.iterdir()
        if child.name not in _RUN_ENTRIES
        and not _STEP.fullmatch(child.name)
        and not is_temporary(child.name)
    )


def _run_content(out: Path) -> list[Path]:
    """What a run left in ``out``, not counting a lock or the temporaries of a killed save."""
    return [c for c in out.iterdir() if c.name != LOCK_FILE and not is_temporary(c.name)]


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` a run must not write into. Only checks: nothing is changed here.

    ``--overwrite`` replaces an xlm run, never anything else: not the working
    directory (or a folder above it), and not a directory holding other files.
    """
    if out.exists() and not out.is_dir():
        raise XLMUserError(f"--out {out} is a file, not a directory")
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise XLMUserError(
            f"--out {out} is the working directory or a folder above it; name a directory for the run, e.g. --out runs/NAME"
        )
    if not out.exists() or not _run_content(out):
        return
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise XLMUserError(
            f"--out {out} holds files that are not part of an xlm run ({shown}); choose a new directory"
        )
    if overwrite:
        return
    if (out / FINAL_DIR / CONFIG_FILE).exists():
        raise XLMUserError(
            f"--out {out} already holds a finished run; pass --overwrite to replace it"
        )
    if (out / RUN_FILE).exists():
        raise XLMUserError(
            f"--out {out} holds an unfinished run; continue it with `xlm train --resume {out}` or pass --overwrite"
        )
    raise XLMUserError(
        f"--out {out} holds leftovers of an xlm run but no run.json; pass --overwrite to replace them"
    )


class RunDirectory:
    """The run directory a training process holds: locked, cleaned, and its old run kept until safe.

    Use as a context manager around the whole run (main process only)::

        with RunDirectory(path) as run_dir:
            run_dir.set_aside()     # --overwrite: the old run moves to .replaced/
            ...                     # train; after the first saved state:
            run_dir.commit()        # the old run is deleted

    Leaving the block with an exception before :meth:`commit` puts the old run back.
    """

    def __init__(self, path: Path):
        self.path = path
        self._locked = False
        self._set_aside = False

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def replaced(self) -> Path:
        return self.path / REPLACED_DIR

    def __enter__(self) -> RunDirectory:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as exc:
            raise XLMUserError(
                f"cannot write to --out {self.path}: {exc.strerror or exc}"
            ) from None
        self._recover()
        for directory in (self.path, self.path / LIGHTNING_DIR):
            remove_stale(directory)
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if self._set_aside:  # leaving before commit(): the new run never saved a state
                self._restore()
        finally:
            self._unlock()

    # -- one writer ------------------------------------------------------------------------

    def _lock(self) -> None:
        record = f"{socket.gethostname()} {os.getpid()}\n"
        while True:
            try:
                fd = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as file:
                file.write(record)
            self._locked = True
            return

    def _take_over_if_stale(self) -> None:
        try:
            host, pid = self.lock_file.read_text().split()
            pid_number = int(pid)
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError):
            host, pid_number = socket.gethostname(), -1  # unreadable: written by a killed process
        if host != socket.gethostname():
            raise XLMUserError(
                f"--out {self.path} is in use by a run on host {host} (pid {pid_number}); "
                f"if that run is gone, delete {self.lock_file}"
            )
        if _alive(pid_number):
            raise XLMUserError(
                f"--out {self.path} is in use by a running xlm train (pid {pid_number}); wait for it or choose another directory"
            )
        print(
            f"warning: taking over {self.lock_file} left by process {pid_number}, which is no longer running",
            file=sys.stderr,
        )
        with contextlib.suppress(FileNotFoundError):
            self.lock_file.unlink()

    def _unlock(self) -> None:
        if self._locked:
            with contextlib.suppress(OSError):
                self.lock_file.unlink()
            self._locked = False

    # -- replacing an old run --------------------------------------------------------------

    def _run_entries(self) -> list[Path]:
        return [c for c in self.path.iterdir() if c.name not in (LOCK_FILE, REPLACED_DIR)]

    def set_aside(self) -> None:
        """Move the old run into ``.replaced/`` (renames within DIR: nothing is copied)."""
        entries = self._run_entries()
        if not entries:
            return
        self.replaced.mkdir()
        self._set_aside = True
        for entry in entries:
            os.replace(entry, self.replaced / entry.name)

    def commit(self) -> None:
        """The new run has a resumable state: the old one may go."""
        if self._set_aside:
            shutil.rmtree(self.replaced, ignore_errors=True)
            self._set_aside = False

    def _restore(self) -> None:
        for entry in self._run_entries():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        for entry in self.replaced.iterdir():
            os.replace(entry, self.path / entry.name)
        self.replaced.rmdir()
        self._set_aside = False

    def _recover(self) -> None:
        """A ``.replaced/`` left by a killed ``--overwrite``: keep whichever run can be continued."""
        if not self.replaced.is_dir():
            return
        if (self.path / LIGHTNING_DIR / LAST_CKPT).is_file():
            shutil.rmtree(self.replaced, ignore_errors=True)
        else:
            self._set_aside = True
            self._restore()
            print(
                f"warning: restored the run in {self.path} that an interrupted --overwrite had set aside",
                file=sys.stderr,
            )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
