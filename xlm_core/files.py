"""Writing files so that a reader never sees half of one, with the permissions the user chose.

Every file a run or a checkpoint holds is written through here: into a
temporary name *in the same directory* (so the final rename never crosses a
filesystem, where it would become a copy that a kill can truncate), flushed
and fsynced, then renamed over the target with :func:`os.replace`. Files and
directories get the user's umask, like any file the user creates, so a cluster
group can read a colleague's checkpoints. Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

_umask: int | None = None


def umask() -> int:
    """The process umask (read once: Linux shows it in /proc; elsewhere set and restored)."""
    global _umask
    if _umask is None:
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                line = next(s for s in status if s.startswith("Umask:"))
            _umask = int(line.split()[1], 8)
        except (OSError, StopIteration, ValueError):
            _umask = os.umask(0o022)
            os.umask(_umask)
    return _umask


def give_user_mode(path: str | os.PathLike[str]) -> None:
    """Reset ``path`` to the mode a plain ``open``/``mkdir`` would have given it.

    For files written by libraries that create them private (safetensors writes
    0600) and directories made by :mod:`tempfile` (0700).
    """
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~umask())


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name next to ``path``: ``.NAME.KIND-<pid>-<random>``; stale ones are recognisable."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(3)}")


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` with ``write(file)``: complete and durable, or not at all.

    A failure (a full disk, a kill) leaves the old ``path`` untouched and no temporary behind
    (a kill -9 leaves one, which :func:`remove_stale` clears at the next start).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    text = json.dumps(data, indent=2) + "\n"
    write_atomic(path, lambda file: file.write(text.encode("utf-8")))


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A temporary sibling of ``target`` to fill; on success it replaces ``target`` in one rename.

    An existing ``target`` (a step written again after a resume) is moved aside and
    removed only once the new one is in place, so there is always one complete copy.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        for child in tmp.iterdir():  # contents were fsynced by their writers or are small
            if child.is_file():
                with open(child, "rb") as file:
                    os.fsync(file.fileno())
        fsync_dir(tmp)
        if target.exists():
            old = temp_sibling(target, "old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a leftover of a killed save: ``.NAME.tmp-…``/``.NAME.old-…`` from
    :func:`temp_sibling`, or ``.NAME.<random>.tmp`` as earlier versions named them."""
    stem, _, tail = name.rpartition(".")
    if not name.startswith(".") or not stem:
        return False
    return tail == "tmp" or tail.startswith(("tmp-", "old-"))


def remove_stale(directory: Path) -> list[Path]:
    """Remove the temporaries a killed save left in ``directory``; return what was removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for child in directory.iterdir():
        if is_temporary(child.name):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
            removed.append(child)
    return removed
