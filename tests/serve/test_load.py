"""A short run of the load test (bench/bench_serve.py): 8 concurrent clients, no error, no mixed-up answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hnf.serve.client import BackgroundServer

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_serve.py"


def test_eight_concurrent_clients_get_their_own_answers(server: BackgroundServer) -> None:
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    uploads = bench.synthetic_uploads(count=6)
    stats = bench.run_load(server.url, uploads, requests=40, clients=8)
    assert stats["errors"] == []
    assert stats["requests"] == 40 and stats["requests_per_s"] > 0
