"""What the benchmarks' sweep plots share: x ticks at the swept values only, legends, saving; and
redrawing a plot and its tables from a saved report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
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


def redraw(
    plot: Callable[[dict[str, Any], Path], None], print_tables: Callable[[dict[str, Any]], None]
) -> None:
    """The command line of a ``_*_report.py``: read a benchmark's JSON, draw its plot again (into
    ``--plot``, or where the report says it went) and print its tables, measuring nothing."""
    parser = argparse.ArgumentParser(
        description="redraw a benchmark's plot and tables from its JSON"
    )
    parser.add_argument("report", type=Path)
    parser.add_argument("--plot", type=Path, help="where the plot goes (default: the report's own)")
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    target = args.plot or (Path(report["plot"]) if report.get("plot") else None)
    if target is not None:
        plot(report, target)
    print_tables(report)
