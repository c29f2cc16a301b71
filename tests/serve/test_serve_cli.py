"""`hnf serve` itself: the command starts uvicorn on 127.0.0.1 and answers until stopped."""

from __future__ import annotations

from pathlib import Path

from hnf.serve.client import Client

from .conftest import serve_process


def test_hnf_serve_command(serve_checkpoint: Path, tmp_path: Path) -> None:
    options = ["--max-upload-mb", "1", "--max-request-pixels", "5000000", "--decode-slots", "3"]
    with serve_process(serve_checkpoint, tmp_path, options) as (_, url):
        limits = Client(url, timeout=10).get("/v1/model").body["limits"]
    assert limits["max_upload_bytes"] == 1024 * 1024
    assert limits["max_request_pixels"] == 5_000_000 and limits["decode_slots"] == 3
