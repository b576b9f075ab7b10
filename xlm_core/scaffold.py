"""``xlm plugins new NAME``: write a working third-party plugin package from the bundled template.

The template (``xlm_core/templates/plugin``) is a complete small family, a
masked-denoising LM on the core's fixed window layout (``xlm_core.nn.window``), so
a new plugin starts from code that installs, lists as ``ok``, passes the
conformance kit and trains; its author then changes it.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import uuid
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import xlm_core
from xlm_core.errors import XLMUserError
from xlm_core.plugins.manifest import parse_version

if TYPE_CHECKING:  # pragma: no cover
    from importlib.resources.abc import Traversable

TEMPLATE_SUFFIX = ".tmpl"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def check_name(name: str) -> None:
    """A family name is a lowercase Python identifier: it names the package ``xlm_NAME`` too."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise XLMUserError(
            f"invalid plugin name {name!r}: use a lowercase identifier such as 'toy' or 'my_family' "
            "(letters, digits, underscores; starting with a letter)"
        )


def template_values(name: str) -> dict[str, str]:
    """What the ``{{placeholders}}`` in the template files become."""
    core_major, core_minor = (int(p) for p in xlm_core.__version__.split(".")[:2])
    # Compatible range: same minor while xlm-core is 0.x (minor bumps may break), same major after.
    upper = f"0.{core_minor + 1}" if core_major == 0 else f"{core_major + 1}"
    api_major, api_minor = parse_version(xlm_core.PLUGIN_API_VERSION)
    return {
        "name": name,
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "package": f"xlm_{name}",
        "distribution": f"xlm-{name}",
        "core_requirement": f"xlm-core>={core_major}.{core_minor},<{upper}",
        "api_version": f"{api_major}.{api_minor}",
    }


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    leftover = re.search(r"\{\{\w+\}\}", text)
    if leftover:  # a typo in the template must not produce a package that fails later
        raise RuntimeError(f"template placeholder {leftover.group()} has no value")
    return text


def create_plugin(name: str, directory: str | os.PathLike[str] = ".") -> Path:
    """Write ``directory/xlm-NAME`` and return its path; nothing is written if anything is wrong."""
    check_name(name)
    values = template_values(name)
    parent = Path(directory)
    target = parent / values["distribution"]
    if target.exists():
        raise XLMUserError(f"{target} already exists; choose another --dir or remove it")
    if parent.exists() and not parent.is_dir():
        raise XLMUserError(f"--dir {parent} is not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    # Render into a sibling temporary directory, then rename: the package appears whole or not at all.
    staging = parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _write_tree(resources.files("xlm_core") / "templates" / "plugin", staging, values)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_tree(source: Traversable, dest: Path, values: dict[str, str]) -> None:
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        name = values["package"] if entry.name == "package" else entry.name
        if entry.is_dir():
            (dest / name).mkdir()
            _write_tree(entry, dest / name, values)
        elif name.endswith(TEMPLATE_SUFFIX):
            (dest / name[: -len(TEMPLATE_SUFFIX)]).write_text(
                render(entry.read_text("utf-8"), values), "utf-8"
            )
