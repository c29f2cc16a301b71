"""Speed of the synthetic micrograph generator on one core.

Measures (1) drawing images in memory and (2) writing a whole dataset (PNG encoding, atomic
writes, labels.csv) with ``write_synthetic_dataset``, and prints images per second. The process
is pinned to one core (``--cores``), so the writer's I/O threads share it with the generator.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_synth.py --size 256 --per-class 30
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from hnf.data.synth import SYNTH_CLASSES, synth_image, write_synthetic_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=1, help="pin the process to this many cores")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    n = args.per_class * len(SYNTH_CLASSES)

    synth_image(args.seed, 0, 10**6, args.size)  # warm caches (coordinate grids, imports)
    start, cpu = time.perf_counter(), time.process_time()
    for ci in range(len(SYNTH_CLASSES)):
        for i in range(args.per_class):
            synth_image(args.seed, ci, i, args.size)
    draw, draw_cpu = time.perf_counter() - start, time.process_time() - cpu

    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        write_synthetic_dataset(tmp, args.per_class, args.size, args.seed)
        write, write_cpu = time.perf_counter() - start, time.process_time() - cpu

    print(f"size {args.size}, {n} images, 1 thread, pinned to {args.cores} core(s)")
    print("wall clock (depends on what else runs) and CPU time (the work of one core):")
    print(f"draw only:     wall {n / draw:7.1f} images/s   cpu {n / draw_cpu:7.1f} images/s "
          f"({1000 * draw_cpu / n:.2f} ms/image)")
    print(f"write dataset: wall {n / write:7.1f} images/s   cpu {n / write_cpu:7.1f} images/s "
          f"({1000 * write_cpu / n:.2f} ms/image)")


if __name__ == "__main__":
    main()
