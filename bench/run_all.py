"""``make bench``: the CPU benchmarks of BENCHMARKS.md, one after another, with the commands it cites.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--list]

Each benchmark runs in its own process (so none inherits another's threads or memory), its
output is printed under a header with the exact command, and a failure is reported without
stopping the rest; the exit status is 1 if any failed. ``bench_serve`` rewrites
``bench/results/serve.md``, as its section in BENCHMARKS.md says. Not included, because they take tens of
minutes or need other hardware or finished runs: the real-data tables (``bench/cpu_realdata.sh``),
the GPU benchmarks (``bench/gpu/``), ``bench/tta_table.py`` (scores finished runs) and the profiler
(``bench/profile_backbone.py``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, list[str]] = {
    "band_acceptance": ["band_acceptance.py", "--per-class", "30"],
    "bench_data": ["bench_data.py"],
    "bench_synth": ["bench_synth.py", "--per-class", "30"],
    "synth_difficulty": ["synth_difficulty.py", "--threads", "1"],
    "bench_backbone": ["bench_backbone.py", "--iters", "2"],
    "bench_optimizer": ["bench_optimizer.py", "--model", "hnf_llm_small"],
    "bench_train_step": ["bench_train_step.py"],
    "bench_attention": ["bench_attention.py"],
    "bench_token_subset": ["bench_token_subset.py"],
    "bench_serve": ["bench_serve.py", "--requests", "200", "--clients", "8"],
}
"""Name -> script and arguments, as the BENCHMARKS.md sections cite them."""

ONE_CORE = {"bench_synth", "synth_difficulty"}
"""Benchmarks measured on one core (``OMP_NUM_THREADS=1``)."""


def run(name: str) -> bool:
    """Run one benchmark; True when it exited with status 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    if name in ONE_CORE:
        env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, str(HERE / BENCHMARKS[name][0]), *BENCHMARKS[name][1:]]
    prefix = "OMP_NUM_THREADS=1 " if name in ONE_CORE else ""
    print(f"\n## {name}\n\n$ {prefix}.venv/bin/python bench/{' '.join(BENCHMARKS[name])}\n", flush=True)
    start = time.perf_counter()
    status = subprocess.run(command, env=env, check=False).returncode
    print(f"\n({name}: exit status {status}, {time.perf_counter() - start:.0f} s)", flush=True)
    return status == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(BENCHMARKS))
        return
    failed = [name for name in (args.only or BENCHMARKS) if not run(name)]
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)
    print("\nall benchmarks finished")


if __name__ == "__main__":
    main()
