"""Cold start of the ``xlm`` CLI: wall time of ``xlm plugins list`` in fresh processes.

Goal (issue 2): median <= 0.5 s on a 2-core machine. Every run is a new
interpreter, so the figure includes Python start-up, entry-point discovery and
loading every installed plugin's entry module. For scale, the same number of
bare ``python -c pass`` runs is timed in the same session.

    python benchmarks/cli_startup.py [--runs 15]

Prints the figures and writes benchmarks/results/cli_startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.5
RESULTS = Path(__file__).resolve().parent / "results" / "cli_startup.json"


def xlm_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("xlm")
    if script.exists():
        return [str(script)]
    found = shutil.which("xlm")
    return [found] if found else [sys.executable, "-m", "xlm_core.cli.main"]


def time_runs(command: list[str], runs: int, env: dict[str, str]) -> list[float]:
    subprocess.run(command, capture_output=True, env=env, check=True)  # warm the OS file cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=15, help="fresh processes per command (default 15)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("XLM_")}
    xlm = xlm_command()
    listed = json.loads(
        subprocess.run([*xlm, "plugins", "list", "--json"], capture_output=True, env=env).stdout
    )
    commands = {
        "xlm plugins list": [*xlm, "plugins", "list"],
        "xlm --help": [*xlm, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    results = {name: summary(time_runs(cmd, args.runs, env)) for name, cmd in commands.items()}

    median = results["xlm plugins list"]["median_s"]
    baseline = results["python -c pass"]["median_s"]
    print(
        f"cold start, {args.runs} fresh processes each, {os.cpu_count()} CPUs, {len(listed)} plugins installed"
    )
    for name, r in results.items():
        print(
            f"  {name:18} median {r['median_s']:.3f} s   min {r['min_s']:.3f} s   max {r['max_s']:.3f} s"
        )
    verdict = "meets" if median <= GOAL_S else "MISSES"
    print(
        f"`xlm plugins list` median {median:.3f} s {verdict} the goal of <= {GOAL_S} s "
        f"({median / baseline:.1f}x a bare interpreter start)"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "cli_startup",
                "runs": args.runs,
                "goal_median_s": GOAL_S,
                "meets_goal": median <= GOAL_S,
                "ratio_to_bare_python": round(median / baseline, 2),
                "results": results,
                "plugins": [{"name": r["name"], "status": r["status"]} for r in listed],
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)
                    if hasattr(os, "getloadavg")
                    else None,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"wrote {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out}"
    )


if __name__ == "__main__":
    main()
