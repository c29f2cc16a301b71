"""A short run of the load test (bench/bench_serve.py): 8 concurrent clients, no error, no mixed-up
answer, and the requests really were served concurrently."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

from hnf.predict import Predictor
from hnf.serve import create_app
from hnf.serve.client import BackgroundServer

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_serve.py"


class InFlight:
    """ASGI middleware counting the HTTP requests the server has begun and not yet answered:
    ``most`` is the largest number at once, ``total`` the requests seen."""

    def __init__(self, app: Any) -> None:
        self.app, self.now, self.most, self.total = app, 0, 0, 0
        self.lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        with self.lock:
            self.now += 1
            self.total += 1
            self.most = max(self.most, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            with self.lock:
                self.now -= 1


def test_eight_concurrent_clients_get_their_own_answers(predictor: Predictor) -> None:
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    uploads = bench.synthetic_uploads(count=6)
    counter = InFlight(create_app(predictor))
    with BackgroundServer(counter) as server:
        stats = bench.run_load(server.url, uploads, requests=40, clients=8)
    # every answer is the one its image got alone, before the load (the bench compares them)
    assert stats["errors"] == [] and stats["requests"] == 40
    assert counter.total == 40 + len(uploads)  # the warm-up answers, then the 40
    # concurrent: the server held several requests at once, and the wall time is under the sum of
    # the latencies (half the requests took at least the median, so that sum is at least
    # requests * p50 / 2)
    assert counter.most > 1
    assert stats["wall_s"] < 0.5 * stats["requests"] * stats["p50_ms"] / 1000
