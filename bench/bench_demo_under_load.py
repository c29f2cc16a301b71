"""The time-budgeted demo on a quiet machine and under a competing CPU-bound process.

Runs ``hnf demo --seed 0`` twice: once quiet, once with a competing process (one Python thread
multiplying 256x256 matrices with numpy, single-threaded BLAS) started with the demo and stopped
after ``--load-seconds`` (90). A transient slowdown early in the run must not cut the schedule
for good (:mod:`hnf.train.budget`): the loaded run's held-out top-1 should stay within 3 points of
the quiet one's. Writes both runs' epochs, top-1, macro-F1, wall time and last lines to
``bench/results/demo_under_load.json``.

    .venv/bin/python bench/bench_demo_under_load.py                 # about 20 minutes
    .venv/bin/python bench/bench_demo_under_load.py --minutes 1 --per-class 10 --load-seconds 20 \\
        --out /tmp/demo-load.json                                   # a smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "demo_under_load.json"
HNF = Path(sys.executable).with_name("hnf")
BUSY_LOOP = (
    "import numpy as np, time\n"
    "a = np.random.default_rng(0).standard_normal((256, 256))\n"
    "while True:\n"
    "    a = np.tanh(a @ a)\n"
)


def competitor(seconds: float) -> subprocess.Popen:
    """A CPU-bound process on one thread that stops itself after ``seconds``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(["timeout", f"{seconds:g}", sys.executable, "-c", BUSY_LOOP], env=env)


def run_demo(out: Path, minutes: float, per_class: int, load_seconds: float, model: str) -> dict:
    """One ``hnf demo --seed 0 --model MODEL`` into ``out``; with ``load_seconds > 0`` a competitor runs for its
    first ``load_seconds``. Returns epochs, scores, wall time and the output's last lines."""
    command = [str(HNF), "demo", "--seed", "0", "--out", str(out), "--minutes", f"{minutes:g}",
               "--per-class", str(per_class), "--model", model]
    load = os.getloadavg()[0]
    busy = competitor(load_seconds) if load_seconds > 0 else None
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    config = json.loads((out / "run" / "config.json").read_text())
    return {
        "command": " ".join(command[1:]), "competing_load_s": load_seconds, "load_average_at_start": load,
        "epochs": metrics["epochs"], "time_budget_s": config["time_budget_s"], "top1": metrics["top1"],
        "macro_f1": metrics["macro_f1"], "train_seconds": metrics["train_seconds"], "wall_s": wall,
        "last_lines": done.stdout.strip().splitlines()[-4:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.5, help="the demo's --minutes")
    parser.add_argument("--per-class", type=int, default=150, help="the demo's --per-class")
    parser.add_argument("--model", default="hnf_llm_lite0", help="the demo's --model")
    parser.add_argument("--load-seconds", type=float, default=90.0, help="how long the competitor runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, seconds in (("quiet", 0.0), ("loaded", args.load_seconds)):
            runs[name] = run_demo(Path(tmp) / name, args.minutes, args.per_class, seconds, args.model)
            print(f"{name}: {runs[name]['epochs']} epochs, top-1 {runs[name]['top1']:.4f}, "
                  f"{runs[name]['wall_s']:.0f} s", flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cores": os.cpu_count(),
        "competitor": "one Python process, numpy 256x256 matrix products on one thread", **runs,
        "top1_difference_points": 100 * (runs["quiet"]["top1"] - runs["loaded"]["top1"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"quiet - loaded top-1: {report['top1_difference_points']:.1f} points; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
