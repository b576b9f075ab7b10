"""Errors that reach the user as one line (exit code 2) rather than a traceback."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class XLMUserError(Exception):
    """Bad input from the user: a flag, config value, file, checkpoint or plugin.

    The CLI prints ``error: <message>`` on one line and exits with code 2;
    ``XLM_DEBUG=1`` shows the traceback as well.
    """

    exit_code = 2


class PluginError(XLMUserError):
    """A plugin is missing, broken, disabled or incompatible."""


class StrictPluginError(Exception):
    """Raised under ``XLM_STRICT_PLUGINS=1`` when any plugin failed to load (exit code 1)."""

    exit_code = 1


class TrainingInterrupted(Exception):
    """Training stopped on a signal (Ctrl-C, SIGTERM) after saving a resumable state.

    The CLI prints the message (which says how to resume) and exits with 128 + the
    signal number, as a shell reports a process ended by that signal.
    """

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by signal {signum}")
        self.signum = signum
        self.exit_code = 128 + int(signum)


class XLMDeprecationWarning(FutureWarning):
    """Something renamed that still works for one release; the CLI shows it as one ``warning:`` line."""


#: The release that removes what is renamed in 0.2 (settings keys and Python names alike).
RENAMED_REMOVED_IN = "0.3.0"


def warn_renamed(old: str, new: str, stacklevel: int = 4) -> None:
    """One :class:`XLMDeprecationWarning`: ``old`` is renamed ``new`` and works until the next minor."""
    import warnings

    warnings.warn(
        f"{old} is renamed {new}; the old name works until xlm-core {RENAMED_REMOVED_IN}",
        XLMDeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_attributes(module: str, renamed: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that still answers each old name in ``renamed`` (old -> the new
    object's dotted path), with one warning, until :data:`RENAMED_REMOVED_IN`."""

    def __getattr__(name: str) -> Any:
        if name not in renamed:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target_module, _, attribute = renamed[name].rpartition(".")
        warn_renamed(f"{module}.{name}", renamed[name], stacklevel=3)
        return getattr(importlib.import_module(target_module), attribute)

    return __getattr__
