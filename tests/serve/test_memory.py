"""`hnf serve` cannot be run out of memory by small requests: a real uvicorn server in its own
process, requests of tiny-bytes, huge-dimension PNGs, its resident memory read from /proc."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from hnf.serve.client import Client

from .conftest import serve_process

LIMITS = ["--max-pixels", "20000000", "--max-request-pixels", "40000000", "--decode-slots", "1"]


def _blank_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_huge_dimension_uploads_are_refused_or_decoded_one_at_a_time(serve_checkpoint: Path, tmp_path: Path,
                                                                      synth_pngs) -> None:
    big = _blank_png(4000, 4000)  # 16 M pixels in about 20 KB
    assert len(big) < 100_000
    with serve_process(serve_checkpoint, tmp_path, LIMITS) as (proc, url):
        client = Client(url, timeout=120)
        assert client.predict(synth_pngs[:1]).status == 200  # model loaded, first request paid for
        baseline = _memory_kib(proc.pid, "VmRSS")

        # over the per-request budget: refused from the headers, before anything is decoded
        many = client.predict([(f"big{i}.png", big) for i in range(24)])
        assert many.status == 413
        assert many.body["error"] == (
            "24 images of 384,000,000 pixels in all exceed the limit of 40,000,000 decoded pixels per request"
        )
        assert _memory_kib(proc.pid, "VmHWM") - baseline < 100_000

        # one such image alone: what decoding one costs this server
        assert client.predict([("one.png", big)]).status == 200
        one_image = _memory_kib(proc.pid, "VmHWM") - baseline
        assert one_image < 20 * 16_000  # KiB: under 20 bytes a pixel (8-bit file, float32 grey)

        # within the budget, four requests of two at once: the decode slot lets one image at a
        # time. Four at once (--decode-slots 8) peak at about 3.8 times one image here; with one
        # slot the peak is one image's plus what the allocator keeps in each thread's arena
        # (about 1.8 times)
        answers: list[int] = []

        def send() -> None:
            answers.append(client.predict([("a.png", big), ("b.png", big)]).status)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200] * 4
        assert _memory_kib(proc.pid, "VmHWM") - baseline < 2.5 * one_image

        strip = io.BytesIO()
        Image.new("L", (10000, 1), 128).save(strip, format="PNG")
        refused = client.predict([("strip.png", strip.getvalue())])
        assert refused.status == 422
        assert refused.body["error"] == (
            "strip.png: 10000x1 pixels is too small to classify (the short side must be at least 8 pixels)"
        )

        normal = client.predict(synth_pngs[:2])
        assert normal.status == 200 and all(r["error"] is None for r in normal.body["results"])
