"""Speed of the synthetic micrograph generator on one core.

Measures (1) drawing images in memory (also per class), (2) PNG-encoding them, and (3) writing a
whole dataset (drawing, PNG encoding, atomic writes, labels.csv) with ``write_synthetic_dataset``,
and prints images per second. The process is pinned to one core (``--cores``), so the writer's
I/O threads share it with the generator.

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
from hnf.data.synth.writer import encode_png  # noqa: E402


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
    images, per_class_cpu = [], []
    start, cpu = time.perf_counter(), time.process_time()
    for ci in range(len(SYNTH_CLASSES)):
        class_cpu = time.process_time()
        for i in range(args.per_class):
            images.append(synth_image(args.seed, ci, i, args.size)[0])
        per_class_cpu.append(time.process_time() - class_cpu)
    draw, draw_cpu = time.perf_counter() - start, time.process_time() - cpu

    cpu = time.process_time()
    encoded = sum(len(encode_png(image)) for image in images)
    encode_cpu = time.process_time() - cpu
    del images

    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        write_synthetic_dataset(tmp, args.per_class, args.size, args.seed)
        write, write_cpu = time.perf_counter() - start, time.process_time() - cpu

    print(f"size {args.size}, {n} images, 1 thread, pinned to {args.cores} core(s)")
    print("wall clock (depends on what else runs) and CPU time (the work of one core):")
    print(f"draw only:     wall {n / draw:7.1f} images/s   cpu {n / draw_cpu:7.1f} images/s "
          f"({1000 * draw_cpu / n:.2f} ms/image)")
    print(f"PNG encode:                           cpu {n / encode_cpu:7.1f} images/s "
          f"({1000 * encode_cpu / n:.2f} ms/image, {encoded / n / 1024:.1f} KiB/image)")
    print(f"write dataset: wall {n / write:7.1f} images/s   cpu {n / write_cpu:7.1f} images/s "
          f"({1000 * write_cpu / n:.2f} ms/image)")
    print("draw, CPU ms/image per class: " + ", ".join(
        f"{name} {1000 * t / args.per_class:.1f}" for name, t in zip(SYNTH_CLASSES, per_class_cpu)))


if __name__ == "__main__":
    main()
