"""Reading config files (YAML, TOML, JSON) and printing a resolved config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xlm_core.errors import XLMUserError

if TYPE_CHECKING:
    from xlm_core.config.schema import RunConfig


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a dict; a missing or malformed file is one line."""
    file = Path(path)
    if not file.is_file():
        raise XLMUserError(f"config file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XLMUserError(f"cannot read config file {file}: {exc}") from None
    suffix = file.suffix.lower()
    if suffix == ".toml":
        data = _parse_toml(text, file)
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise XLMUserError(f"{file}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    else:  # YAML, which also reads JSON; unknown suffixes get the most forgiving parser
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise XLMUserError(f"{file}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise XLMUserError(f"{file}: expected a mapping of config sections, got {type(data).__name__}")
    return data


def dump_config(config: RunConfig, fmt: Literal["yaml", "json"] = "yaml") -> str:
    """The resolved config as YAML (readable, and valid input for ``--config``) or JSON."""
    data = config.dump()
    if fmt == "json":
        return json.dumps(data, indent=2)
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _parse_toml(text: str, file: Path) -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise XLMUserError(f"{file}: reading TOML on Python 3.10 needs `pip install tomli`") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise XLMUserError(f"{file}: malformed TOML: {exc}") from None
