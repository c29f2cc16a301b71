"""Load test of ``hnf serve``: N requests from C concurrent clients on loopback.

Starts the service in this process (uvicorn on 127.0.0.1, a free port) for a checkpoint (default: a
seeded, untrained hnf_small: the speed does not depend on the weights), or targets a running one
with ``--url``. Each request posts one synthetic micrograph (256 px PNG, ten different images);
every answer is compared with the answer that image got alone before the load began, so a mixed-up
answer is counted. Writes requests/s and latency percentiles to ``bench/results/serve.md``.

    .venv/bin/python bench/bench_serve.py --requests 200 --clients 8
    .venv/bin/python bench/bench_serve.py --checkpoint runs/demo/checkpoint
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hnf.data.synth.micrograph import SYNTH_CLASSES
from hnf.data.synth.writer import encode_png, synth_image
from hnf.serve.client import BackgroundServer, Client

RESULTS = Path(__file__).parent / "results" / "serve.md"


def synthetic_uploads(count: int = 10, size: int = 256, seed: int = 7) -> list[tuple[str, bytes]]:
    return [(f"synth-{i}.png", encode_png(synth_image(seed, i % 10, i // 10, size)[0])) for i in range(count)]


def run_load(url: str, uploads: list[tuple[str, bytes]], requests: int, clients: int) -> dict:
    """Send ``requests`` single-image predictions from ``clients`` threads; check every answer."""
    client = Client(url)
    expected = {}
    for name, data in uploads:
        reply = client.predict([(name, data)])
        if reply.status != 200:
            raise RuntimeError(f"warm-up request failed: {reply.status} {reply.body}")
        expected[name] = reply.body["results"][0]["probabilities"]

    def one(index: int) -> tuple[float, str | None]:
        name, data = uploads[index % len(uploads)]
        start = time.perf_counter()
        reply = client.predict([(name, data)])
        elapsed = time.perf_counter() - start
        if reply.status != 200:
            return elapsed, f"HTTP {reply.status}: {reply.body}"
        result = reply.body["results"][0]
        if result["filename"] != name:
            return elapsed, f"answer for {result['filename']} came back for {name}"
        worst = max(abs(result["probabilities"][c] - p) for c, p in expected[name].items())
        return elapsed, None if worst < 1e-6 else f"{name}: probabilities differ by {worst:.2e}"

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies = np.array([t for t, _ in outcomes])
    errors = [e for _, e in outcomes if e]
    return {
        "requests": requests, "clients": clients, "wall_s": wall, "requests_per_s": requests / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1000), "p95_ms": float(np.percentile(latencies, 95) * 1000),
        "max_ms": float(latencies.max() * 1000), "errors": errors,
    }


def _default_checkpoint(folder: Path) -> Path:
    from hnf.models.factory import build_classifier
    from hnf.train.checkpoint import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = build_classifier("hnf_small", num_classes=len(SYNTH_CLASSES))
    return save_checkpoint(folder / "checkpoint", model, CheckpointMeta("hnf_small", list(SYNTH_CLASSES)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of the server")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to serve (default: untrained hnf_small)")
    parser.add_argument("--url", help="a running server instead of one started here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    uploads = synthetic_uploads()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            stats, model = run_load(args.url, uploads, args.requests, args.clients), "(remote)"
        else:
            from hnf.predict import Predictor
            from hnf.serve import create_app

            checkpoint = args.checkpoint or _default_checkpoint(Path(tmp))
            predictor = Predictor.from_checkpoint(checkpoint)
            model = predictor.model_name + ("" if args.checkpoint else " (untrained, seeded)")
            with BackgroundServer(create_app(predictor)) as server:
                stats = run_load(server.url, uploads, args.requests, args.clients)
    command = "python bench/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"{stats['requests']} requests, {stats['clients']} clients: {stats['requests_per_s']:.1f} req/s, "
          f"p50 {stats['p50_ms']:.0f} ms, p95 {stats['p95_ms']:.0f} ms, max {stats['max_ms']:.0f} ms, "
          f"{len(stats['errors'])} error(s)")
    for error in stats["errors"][:10]:
        print("  ", error)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Service load test\n\n"
        f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the start, {torch.get_num_threads()} torch threads, "
        "server and clients in one process on loopback).\n\n"
        f"Model: {model}. Each request: one 256x256 synthetic PNG to `POST /v1/predict` (top-5, no "
        "explanation); every answer checked against that image's answer alone.\n\n"
        "| requests | clients | requests/s | p50 ms | p95 ms | max ms | errors or mixed-up answers |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {stats['requests']} | {stats['clients']} | {stats['requests_per_s']:.1f} | {stats['p50_ms']:.0f} "
        f"| {stats['p95_ms']:.0f} | {stats['max_ms']:.0f} | {len(stats['errors'])} |\n\n"
        "Inference runs one request at a time under the predictor's lock (2 threads each), so "
        "requests/s is bounded by one forward pass plus decoding; latency grows with the clients "
        "waiting in line. The machine is shared: compare numbers within one run.\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out}")
    return 1 if stats["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
