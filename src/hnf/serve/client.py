"""A small client for the service (standard library only) and a server in a background thread.

``Client("http://127.0.0.1:8000").predict([("a.png", data)])`` posts files to ``/v1/predict``;
``BackgroundServer(app)`` runs uvicorn on 127.0.0.1 with a free port in a thread (for tests,
benchmarks and notebooks)::

    with BackgroundServer(create_app(Predictor.from_checkpoint("run/checkpoint"))) as server:
        print(Client(server.url).predict([("a.png", open("a.png", "rb").read())]))
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


def encode_multipart(files: Iterable[tuple[str, bytes]], field: str = "files") -> tuple[bytes, str]:
    """A multipart/form-data body with each ``(filename, bytes)`` under ``field``, and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for filename, data in files:
        safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """One HTTP connection per call (thread-safe: no state besides the address)."""

    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            reply = connection.getresponse()
            raw = reply.read()
            kind = reply.getheader("content-type", "")
            payload: Any = json.loads(raw) if "json" in kind else raw.decode("utf-8", "replace")
            return Response(reply.status, payload, dict(reply.getheaders()))
        finally:
            connection.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def predict(self, files: Iterable[tuple[str, bytes]], top_k: int = 5, explain: bool = False,
                chunked: bool = False, min_confidence: float | None = None) -> Response:
        """``POST /v1/predict`` with ``files`` (``(filename, bytes)`` pairs)."""
        body, kind = encode_multipart(files)
        fields: dict[str, object] = {"top_k": top_k, "explain": str(explain).lower()}
        if min_confidence is not None:
            fields["min_confidence"] = min_confidence
        query = urlencode(fields)
        payload: bytes | Iterable[bytes] = body
        headers = {"Content-Type": kind}
        if chunked:  # no Content-Length: the server has to count
            payload = (body[i : i + 65536] for i in range(0, len(body), 65536))
            headers["Transfer-Encoding"] = "chunked"
        return self.request("POST", f"/v1/predict?{query}", payload, headers)


class BackgroundServer:
    """uvicorn serving ``app`` on ``host`` in a daemon thread; port 0 picks a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.host, self.startup_timeout = host, startup_timeout
        self.thread = threading.Thread(target=self.server.run, name="hnf-serve", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
