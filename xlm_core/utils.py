"""Two helpers the config, the plugin manifests, the task list and the CLI share; torch-free.

- :func:`suggest`: the did-you-mean of every "unknown key / task / name" message.
- :func:`deep_merge`: how every partial config (a preset, a config file, a ``--set``)
  is laid over another.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (a misspelt key or name), or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def deep_merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` laid over it, mapping by mapping; neither argument is modified.

    A key whose value is a mapping on both sides is merged recursively; any other value
    in ``change`` replaces the one in ``base`` as a deep copy, so the result never shares
    mutable values with ``change``.
    """
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
