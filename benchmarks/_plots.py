"""The finish every benchmark's sweep plot shares: x ticks at the swept values only, legends, saved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def save_sweep(fig: Any, axes: Sequence[Any], swept: Sequence[int], path: Path) -> None:
    """Tick every axis at the swept values (a log axis would label its minor ticks too:
    3x10^0 ...), add the legends, and write ``fig`` to ``path``."""
    for axis in axes:
        axis.set_xticks(swept, [str(v) for v in swept])
        axis.minorticks_off()
        axis.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
