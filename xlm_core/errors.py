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
