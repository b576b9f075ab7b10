"""The progress bar of long inference work (scoring, sampling), shown only on a terminal."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` examples; a context manager with ``update(k)``."""
    from tqdm.auto import tqdm

    # disable=None hides the bar when stderr is not a terminal (logs, pipes, tests).
    return tqdm(
        total=total,
        desc=desc,
        unit="ex",
        leave=False,
        file=sys.stderr,
        disable=None if enabled else True,
    )
