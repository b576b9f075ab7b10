"""Running plugin code so that nothing it raises or prints can break the CLI.

Whatever a plugin's import or hook raises, ``SystemExit`` and its own
``KeyboardInterrupt`` included, becomes a one-line, printable problem on its
record; only the user's Ctrl-C still stops the command.
"""

from __future__ import annotations

import signal
import threading
import types
import unicodedata

import pydantic


def plugin_failure(exc: BaseException, sigint: SigintWatch) -> str:
    """The one-line problem that ``exc``, raised by plugin code under ``sigint``, reports.

    The user's own Ctrl-C is raised again instead: it must stop the command, not fail a plugin.
    """
    if sigint.is_users(exc):
        raise exc
    return describe_exception(exc)


def describe_exception(exc: BaseException) -> str:
    """``TypeName: message`` on one line; a pydantic error lists each ``field: problem``.

    Made printable, since the message is the plugin's and ends up on the user's terminal.
    """
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        text = f"invalid {exc.title}: {problems}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc).strip() else type(exc).__name__
    return printable(" ".join(text.split()))  # status lines and table cells are one line each


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): plugin text must not drive the terminal.

    Format characters (Cf) go too: bidi overrides can make a line read differently than it runs.
    """
    return "".join(
        ascii(ch)[1:-1] if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text
    )


class SigintWatch:
    """Tells the user's Ctrl-C from a KeyboardInterrupt that plugin code raises itself.

    While plugin code runs, a SIGINT handler notes each signal and then behaves as the handler
    it replaced. A KeyboardInterrupt with a SIGINT noted is the user's and must stop the command;
    any other (``raise KeyboardInterrupt`` in a plugin) is that plugin's failure. Only the main
    thread can install a handler, but Python delivers SIGINT to no other thread, so elsewhere
    every KeyboardInterrupt is the plugin's. Under SIG_IGN or SIG_DFL a Ctrl-C raises nothing,
    so there is nothing to tell apart and no handler is installed.
    """

    def __enter__(self) -> SigintWatch:
        self.seen, self._previous = False, None
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: types.FrameType | None) -> None:
        self.seen = True
        assert self._previous is not None
        self._previous(signum, frame)

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def is_users(self, exc: BaseException) -> bool:
        return isinstance(exc, KeyboardInterrupt) and self.seen
