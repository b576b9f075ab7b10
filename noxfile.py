"""Developer sessions: ``nox -s tests``, ``nox -s tests_isolated``, ``nox -s lint``, ``nox -s bench``.

Every session installs with ``constraints.txt`` so torch resolves to the pinned
CPU wheel instead of the newest multi-GB CUDA build.
"""

from __future__ import annotations

import nox

PLUGINS = ("arlm", "mdlm", "mlm", "ilm", "bdlm", "calm")
CONSTRAINTS = ("-c", "constraints.txt")
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """Everything in one environment: core and every in-repo plugin."""
    session.install(*CONSTRAINTS, "-e", ".[dev]", *[a for p in PLUGINS for a in ("-e", f"plugins/xlm-{p}")])
    session.run("pytest", *session.posargs)


@nox.session
@nox.parametrize("plugin", PLUGINS)
def tests_isolated(session: nox.Session, plugin: str) -> None:
    """A fresh environment with the core and ONE plugin: proves each family installs and works on its own."""
    session.install(*CONSTRAINTS, "-e", ".[dev]", "-e", f"plugins/xlm-{plugin}")
    session.env["XLM_STRICT_PLUGINS"] = "1"
    session.run("xlm", "plugins", "list")
    session.run("xlm", "plugins", "validate", plugin)
    session.run("pytest", f"tests/plugins/{plugin}", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Smoke-run the benchmarks (``--quick``) into a temp dir; the committed results stay as measured."""
    session.install(*CONSTRAINTS, "-e", ".[dev]", *[a for p in PLUGINS for a in ("-e", f"plugins/xlm-{p}")])
    tmp = session.create_tmp()
    session.run("python", "benchmarks/cli_startup.py", "--out", f"{tmp}/cli_startup.json")
    for name in (
        "generate_throughput", "train_throughput", "mdlm_samplers", "mlm_decoding", "ilm_insertion", "bdlm_conversion",
        "calm",
    ):
        session.run("python", f"benchmarks/{name}.py", "--quick", "--out", f"{tmp}/{name}.json")
