"""`hnf serve` itself: the command starts uvicorn on 127.0.0.1 and answers until stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hnf.serve.client import Client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_hnf_serve_command(serve_checkpoint: Path, tmp_path: Path) -> None:
    port = _free_port()
    hnf = Path(sys.executable).with_name("hnf")
    command = [str(hnf), "serve", "--checkpoint", str(serve_checkpoint), "--port", str(port), "--max-upload-mb", "1"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        client = Client(f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if client.get("/healthz").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "hnf serve did not come up"
            time.sleep(0.2)
        limits = client.get("/v1/model").body["limits"]
        assert limits["max_upload_bytes"] == 1024 * 1024
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
