"""Entry point of the ``xlm`` console script.

Typer builds the commands; :func:`run` turns user errors into one line on
stderr with exit code 2 (``XLM_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import errno
import sys
import traceback
import warnings

import typer

import xlm_core
from xlm_core.cli._common import debug_mode, echo_err
from xlm_core.errors import (
    StrictPluginError,
    TrainingInterrupted,
    XLMDeprecationWarning,
    XLMUserError,
)
from xlm_core.threads import apply_thread_policy

_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

# Recent typer vendors click; older versions raise click's own exceptions. Catch both.
try:
    import click as _click

    _EXIT: tuple[type[BaseException], ...] = (typer.Exit, _click.exceptions.Exit)
    _ABORT: tuple[type[BaseException], ...] = (typer.Abort, _click.exceptions.Abort)
    _CLI_ERROR: tuple[type[BaseException], ...] = (_click.ClickException,)
except ImportError:  # pragma: no cover - click is not installed beside a vendoring typer
    _EXIT, _ABORT, _CLI_ERROR = (typer.Exit,), (typer.Abort,), ()
_CLI_ERROR += tuple(c for c in [getattr(typer, "TyperException", None)] if c is not None)

app = typer.Typer(
    name="xlm",
    help="Train, sample and evaluate non-autoregressive language models.",
    epilog=(
        "Examples:\n\n"
        "  xlm plugins list                      what is installed, and is it healthy\n\n"
        "  xlm train --plugin mdlm               train the tiny preset on star-easy (CPU is fine)\n\n"
        "  xlm generate --checkpoint runs/NAME/final --num-samples 4\n\n"
        "  xlm eval --checkpoint runs/NAME/final --json\n\n"
        "Set XLM_DEBUG=1 to see tracebacks."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xlm-core {xlm_core.__version__} (plugin API {xlm_core.PLUGIN_API_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, sample and evaluate non-autoregressive language models."""


_registered = False


def _register_commands() -> None:
    # Command modules are cheap to import: each imports torch only inside its command body.
    global _registered
    if not _registered:
        from xlm_core.cli import commands

        commands.register(app)
        _registered = True


def _show_deprecations_as_one_line() -> None:
    """A renamed key warns once, as ``warning: ...`` on stderr, not as a Python warning with a source line."""
    if getattr(warnings.showwarning, "_xlm", False):
        return
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, XLMDeprecationWarning):
            echo_err(f"warning: {message}")
        else:
            previous(message, category, filename, lineno, file, line)

    show._xlm = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.filterwarnings("once", category=XLMDeprecationWarning)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    apply_thread_policy()  # before any command imports torch (docs/usage.md, "Threads")
    _register_commands()
    _show_deprecations_as_one_line()
    try:
        # Outside standalone mode click returns, rather than raises, a command's typer.Exit code.
        code = app(args=argv, prog_name="xlm", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except _EXIT as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except _ABORT:
        echo_err("aborted")
        sys.exit(130)
    except _CLI_ERROR as exc:  # usage errors: unknown command, bad flag, bad value
        if debug_mode():
            traceback.print_exc()
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        echo_err(f"error: {exc.format_message()}{hint}")
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except (XLMUserError, StrictPluginError) as exc:
        if debug_mode():
            traceback.print_exc()
        echo_err(f"error: {exc}")
        sys.exit(exc.exit_code)
    except TrainingInterrupted as exc:
        echo_err(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:
        # A full disk, a read-only or unwritable directory, a quota: the user's to fix, not a bug.
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        if debug_mode():
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        echo_err(f"error: {where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        echo_err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    run()
