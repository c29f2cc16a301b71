"""Timing shared by the benchmarks that compare variants within one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable


def interleaved_medians(cases: dict[Hashable, Callable[[], None]], rounds: int,
                        warmup: int = 2) -> dict[Hashable, float]:
    """Median seconds of each case: ``warmup`` untimed calls of every case, then ``rounds`` rounds
    that time every case once in turn, so drift of a shared machine falls on all cases alike."""
    for run in cases.values():
        for _ in range(warmup):
            run()
    times: dict[Hashable, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
