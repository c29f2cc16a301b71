"""The web page in headless Chromium: upload a synthetic micrograph, see the API's class.

Chromium (Debian's ``chromium`` package, /usr/bin/chromium; ``.ci/run`` installs it) is driven
through the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, JSON
messages ending in NUL), so no extra Python package and no debugging port are needed. The
screenshot is saved as ``artifacts/serve_page.png``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hnf.serve.client import BackgroundServer, Client

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1100", "--remote-debugging-pipe"]


class DevTools:
    """A Chromium process and a minimal DevTools-protocol client over its pipe."""

    def __init__(self, user_data_dir: Path, log: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:  # in the child: the ends Chromium expects at fds 3 and 4
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
            preexec_fn=wire_pipes, close_fds=False,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box is not None:
                        box.put(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            box: queue.Queue = queue.Queue()
            self._replies[ident] = box
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            reply = box.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no reply to {method} within {timeout} s") from None
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def evaluate(self, expression: str, session: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, session: str, timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression, session)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"page never satisfied {expression!r}")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


def _chromium_works() -> bool:
    if not Path(CHROMIUM).exists():
        return False
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_chromium = pytest.mark.skipif(
    not _chromium_works(), reason=f"Chromium not found at {CHROMIUM}: run `apt-get install -y chromium` (as .ci/run does)"
)


@needs_chromium
def test_page_shows_the_api_class_for_an_uploaded_micrograph(server: BackgroundServer, client: Client,
                                                             synth_pngs, tmp_path: Path) -> None:
    name, data = synth_pngs[5]
    upload = tmp_path / name
    upload.write_bytes(data)
    expected = client.predict([(name, data)], top_k=5).body["results"][0]

    browser = DevTools(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Page.navigate", {"url": server.url + "/"}, session)
        browser.wait_for("document.readyState === 'complete' && document.getElementById('file-input') !== null", session)
        browser.wait_for("document.getElementById('model-line').textContent.startsWith('Model ')", session)
        root = browser.send("DOM.getDocument", session=session)["root"]["nodeId"]
        node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#file-input"}, session)["nodeId"]
        browser.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(upload)]}, session)
        shown = browser.wait_for(
            "(() => { const c = document.querySelector('[data-role=result][data-done]');"
            " if (!c) return null; const p = c.querySelector('[data-role=predicted-class]');"
            " return { cls: p ? p.textContent : null, error: (c.querySelector('[data-role=error]') || {}).textContent || null,"
            " bars: c.querySelectorAll('.bar').length, overlay: !!c.querySelector('[data-role=overlay]'),"
            " overlayLoaded: (c.querySelector('[data-role=overlay]') || {}).naturalWidth || 0,"
            " description: (c.querySelector('[data-role=description]') || {}).textContent || '',"
            " scale: (c.querySelector('[data-role=scale]') || {}).textContent || null }; })()",
            session,
        )
        browser.wait_for("(document.querySelector('[data-role=overlay]') || {}).complete", session)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
    finally:
        browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "serve_page.png").write_bytes(base64.b64decode(shot))
    assert shown["error"] is None, shown
    assert shown["cls"] == expected["class"]
    assert shown["bars"] == 5 and shown["overlay"] and shown["overlayLoaded"] == 224
    assert shown["scale"] == "pixel size not stated in the file"
    assert shown["description"].startswith(expected["class"] + ":") and len(shown["description"]) > 100
