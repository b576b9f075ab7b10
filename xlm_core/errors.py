"""Errors that reach the user as one line (exit code 2) rather than a traceback."""

from __future__ import annotations


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
