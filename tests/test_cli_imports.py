"""``xlm --help``, ``xlm --version`` and ``xlm plugins list`` never import torch or lightning.

Each command runs in a fresh interpreter, with every installed plugin discovered,
and the interpreter reports which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "pytorch_lightning")

PROBE = """
import json, sys
from xlm_core.cli.main import run
try:
    run(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = sorted({name.split(".")[0] for name in sys.modules})
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["plugins", "--help"],
        ["plugins", "list"],
        ["plugins", "list", "--json"],
    ],
    ids=" ".join,
)
def test_command_does_not_import_torch_or_lightning(args, clean_env):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    probe = json.loads(result.stdout.rsplit("PROBE ", 1)[1])
    assert probe["code"] in (0, None), result.stderr
    heavy = [name for name in HEAVY if name in probe["loaded"]]
    plugins = [name for name in probe["loaded"] if name.startswith("xlm_")]
    assert not heavy, f"`xlm {' '.join(args)}` imported {heavy}; modules loaded: {plugins}"
