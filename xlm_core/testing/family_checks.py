"""The checks of a family's manifest and package: they need no component, so they run even when
one cannot be resolved."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

from xlm_core.config import check_presets as check_presets_of
from xlm_core.errors import XLMUserError
from xlm_core.plugins.registry import ENTRY_POINT_GROUP, Family
from xlm_core.testing.contracts import expect


def check_presets(family: Family) -> None:
    """Every named preset applies over the defaults and validates against the family's config classes.

    ``FamilyManifest`` checks this when ``xlm_family()`` builds it, so a family that fails here
    made its manifest without validation (``model_copy(update=...)``, ``model_construct``).
    """
    manifest = family.manifest
    try:
        check_presets_of(manifest.presets, manifest.config, manifest.predictor_settings)
    except XLMUserError as exc:
        raise AssertionError(str(exc)) from exc


def check_entry_module_without_torch(family: Family) -> str:
    """The entry module imports in a fresh interpreter where torch and lightning cannot be imported.

    xlm imports it to list plugins and show configs, which must stay fast. Returns
    why the check was skipped, or "" when it ran.
    """
    module = entry_module(family)
    if module is None:
        return (
            f"skipped: {family.name} was registered in-process, so no installed entry point "
            "names a module to import"
        )
    probe = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_TORCH, module, json.dumps(sys.path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = probe.stdout.strip() or probe.stderr.strip()[-500:]
    expect(
        probe.returncode != _HEAVY_IMPORTED,
        f"importing the entry module {module} imports {said}; the entry module, its package's "
        "__init__ and its config module must not import torch or lightning (xlm imports them "
        "to list plugins): import torch in the component modules only",
    )
    expect(
        probe.returncode == 0,
        f"the entry module {module} does not import in a fresh interpreter: {said}",
    )
    return ""


def entry_module(family: Family) -> str | None:
    """The module the family's entry point names, from the installed metadata; None for a family
    registered in-process (no entry point of its distribution is installed)."""
    record = family.record
    if record.distribution is None:
        return None
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name=record.name):
        dist = getattr(ep, "dist", None)
        if dist is not None and dist.metadata["Name"] == record.distribution:
            return ep.module
    return None


_HEAVY_IMPORTED = 3
# Run as `python -c` with the module name and the caller's sys.path (so it finds what the caller
# finds). A refused import is recorded even when the module catches the ImportError: with torch
# installed, that import would still run every time plugins are listed.
_IMPORT_WITHOUT_TORCH = """
import importlib, json, sys, traceback

class Refuse:
    first = None

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in ("torch", "lightning", "pytorch_lightning"):
            return None
        if Refuse.first is None:
            frames = [f for f in traceback.extract_stack() if not f.filename.startswith("<")]
            where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
            Refuse.first = name + where
        raise ModuleNotFoundError(f"No module named {name!r} (refused by xlm's conformance kit)")

sys.path[:] = json.loads(sys.argv[2])
sys.meta_path.insert(0, Refuse())
try:
    importlib.import_module(sys.argv[1])
    error = None
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"
if Refuse.first is not None:
    print(Refuse.first)
    sys.exit(3)
if error is not None:
    print(error)
    sys.exit(1)
"""
