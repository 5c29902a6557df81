"""CLI start-up, measured from outside: `receiver check-config config.yaml` run N times.

    python bench/cli_startup.py [--runs 10] [--config config.yaml]

Prints the median wall time, CPU time (user + system) and peak RSS of the child process
(goal: <= 0.3 s; on a busy machine read the CPU figure, wall time waits for a core), and
the slowest imports (`python -X importtime`). Asserts nothing (shared, noisy machines).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(cmd: list[str]) -> tuple[float, float, float]:
    """(wall s, cpu s, peak RSS MB) of one run of cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024  # ru_maxrss: the largest child so far, in kB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--config", default="config.yaml")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "receiver", "check-config", args.config]
    runs = [one(cmd) for _ in range(args.runs)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    print(f"receiver check-config: wall {wall:.2f} s, cpu {cpu:.2f} s (medians of {args.runs}), "
          f"peak RSS {runs[-1][2]:.1f} MB (goal <= 0.3 s)")
    done = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")][1:]
    print("slowest imports (cumulative us | module):")
    for _self, cumulative, name in sorted(rows, key=lambda r: int(r[1]))[-5:]:
        print(f"  {cumulative.strip():>8} | {name.strip()}")


if __name__ == "__main__":
    main()
