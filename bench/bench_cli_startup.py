"""Start-up time of the command line: ``hnf --help`` and ``hnf train --help`` against
``python -c pass`` (the interpreter alone) and ``python -c "import torch"`` (what every command
paid before the heavy imports moved into the commands that use them).

Each case runs as a fresh subprocess; rounds interleave the cases (bench/timing.py) so drift of the
shared machine falls on all alike. Reported: median wall seconds and median CPU seconds
(user + system of the child) per case, and each as a ratio to ``python -c pass``.

Usage: ``python bench/bench_cli_startup.py --rounds 7 --json bench/results/cli_startup.json``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HNF = [sys.executable, "-m", "hnf"]
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "hnf --help": [*HNF, "--help"],
    "hnf train --help": [*HNF, "train", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def run_once(command: list[str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for command in CASES.values():  # warm the file cache
        run_once(command)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, command in CASES.items():
            samples[name].append(run_once(command))
    rows = {name: {"wall_s": statistics.median(w for w, _ in runs), "cpu_s": statistics.median(c for _, c in runs)}
            for name, runs in samples.items()}
    base = rows["python -c pass"]
    lines = ["| command | wall (s) | x python -c pass | CPU (s) | x python -c pass |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        row["wall_vs_python"] = row["wall_s"] / base["wall_s"]
        row["cpu_vs_python"] = row["cpu_s"] / base["cpu_s"]
        lines.append(f"| `{name}` | {row['wall_s']:.2f} | {row['wall_vs_python']:.1f} | {row['cpu_s']:.2f} | {row['cpu_vs_python']:.1f} |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rounds": args.rounds, "rows": rows, "table": lines}, indent=2) + "\n")


if __name__ == "__main__":
    main()
