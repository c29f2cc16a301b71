"""A real uvicorn server on 127.0.0.1 (free port) serving a small seeded checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "predict"))
import predict_support as support  # noqa: E402

from hnf.data.synth.writer import encode_png, synth_image  # noqa: E402
from hnf.predict import Predictor  # noqa: E402
from hnf.serve import ServeSettings, create_app  # noqa: E402
from hnf.serve.client import BackgroundServer, Client  # noqa: E402


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    return support.make_checkpoint(tmp_path_factory.mktemp("serve") / "checkpoint")


@pytest.fixture(scope="session")
def predictor(serve_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(serve_checkpoint)


@pytest.fixture(scope="session")
def server(predictor: Predictor):
    with BackgroundServer(create_app(predictor)) as running:
        yield running


@pytest.fixture(scope="session")
def client(server: BackgroundServer) -> Client:
    return Client(server.url)


@pytest.fixture(scope="session")
def small_limits_client(predictor: Predictor):
    """A second server with small limits: 300 kB per request, 100,000 pixels, 3 files."""
    settings = ServeSettings(max_upload_bytes=300_000, max_pixels=100_000, max_files=3)
    with BackgroundServer(create_app(predictor, settings)) as running:
        yield Client(running.url)


@pytest.fixture(scope="session")
def synth_pngs() -> list[tuple[str, bytes]]:
    """Ten synthetic micrographs (one per class, 256 px) as PNG files."""
    return [(f"class{c}.png", encode_png(synth_image(1, c, 0, 256)[0])) for c in range(10)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_process(checkpoint: Path, tmp_path: Path, options: Sequence[str] = ()) -> Iterator[tuple[subprocess.Popen, str]]:
    """``hnf serve`` in a process of its own on a free port, up and answering ``/healthz``;
    yields ``(process, url)``, stops it with SIGINT and asserts a clean exit (log in tmp_path)."""
    port = _free_port()
    hnf = Path(sys.executable).with_name("hnf")
    command = [str(hnf), "serve", "--checkpoint", str(checkpoint), "--port", str(port), *options]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            client = Client(url, timeout=10)
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if client.get("/healthz").status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "hnf serve did not come up"
                time.sleep(0.2)
            yield proc, url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log_path.read_text()
