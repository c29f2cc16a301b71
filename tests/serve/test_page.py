"""The web page in headless Chromium: upload a synthetic micrograph, see the API's class.

Chromium (Debian's ``chromium`` package, /usr/bin/chromium; ``.ci/run`` installs it) is driven
through the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, JSON
messages ending in NUL), so no extra Python package and no debugging port are needed. The
screenshot is saved as ``artifacts/serve_page.png``.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import io
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

FEI_TIFF = Path(__file__).resolve().parents[3] / "shared" / "data" / "microscope-tiff" / "fei" / "FEI-Helios-Ebeam-8bits.tif"

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


def open_page(browser: DevTools, url: str) -> str:
    """A new tab on the service's page, loaded and with the model line filled; its session id."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.send("Page.enable", session=session)
    browser.send("Page.navigate", {"url": url + "/"}, session)
    browser.wait_for("document.readyState === 'complete' && document.getElementById('file-input') !== null", session)
    browser.wait_for("document.getElementById('model-line').textContent.startsWith('Model ')", session)
    return session


def choose_files(browser: DevTools, session: str, paths: list[Path]) -> None:
    """Choose ``paths`` in the page's file input, as a user would."""
    root = browser.send("DOM.getDocument", session=session)["root"]["nodeId"]
    node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#file-input"}, session)["nodeId"]
    browser.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(p) for p in paths]}, session)


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
        session = open_page(browser, server.url)
        choose_files(browser, session, [upload])
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


CAPTURE_CSV = """(() => {
  window.__csv = null; window.__download = null;
  const create = URL.createObjectURL;
  URL.createObjectURL = blob => { blob.text().then(text => { window.__csv = text; }); return create.call(URL, blob); };
  HTMLAnchorElement.prototype.click = function () { window.__download = this.download; };
  document.getElementById("download-csv").click();
  return true;
})()"""


@needs_chromium
def test_csv_button_downloads_the_results_shown(server: BackgroundServer, client: Client, synth_pngs,
                                                tmp_path: Path) -> None:
    """Three or four files (two synthetic PNGs, the FEI e-beam TIFF with its pixel size where the
    shared data is present, a broken PNG): the CSV the button builds has one row per file, and
    its cells are the API's results."""
    uploads = list(synth_pngs[2:4]) + ([(FEI_TIFF.name, FEI_TIFF.read_bytes())] if FEI_TIFF.exists() else [])
    uploads.append(("broken, really.png", b"\x89PNG\r\n\x1a\n broken"))
    for name, data in uploads:
        (tmp_path / name).write_bytes(data)
    expected = {}
    for name, data in uploads:
        body = client.predict([(name, data)], top_k=5).body
        expected[name] = body["results"][0] if body.get("results") else {"error": body["error"]}

    browser = DevTools(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        session = open_page(browser, server.url)
        assert browser.evaluate("document.getElementById('download-csv').disabled", session) is True
        choose_files(browser, session, [tmp_path / name for name, _ in uploads])
        browser.wait_for(f"document.querySelectorAll('[data-role=result][data-done]').length === {len(uploads)}",
                         session)
        browser.evaluate(CAPTURE_CSV, session)
        text = browser.wait_for("window.__csv", session)
        download = browser.evaluate("window.__download", session)
        again = browser.evaluate("resultsCsv(shownResults)", session)
    finally:
        browser.close()
    assert download == "hnf-results.csv" and text == again
    rows = list(csv.DictReader(io.StringIO(text)))
    header = next(csv.reader(io.StringIO(text)))
    flags = [k for k in ("abstain", "unknown", "ood_score") if any(k in r for r in expected.values())]
    assert header == ["filename", "class", "probability", "top_k", "band_top", "band_bottom", "pixel_size_m",
                      "field_of_view_m", *flags, "error"]
    assert sorted(r["filename"] for r in rows) == sorted(expected)
    for row in rows:
        api = expected[row["filename"]]
        if api.get("error"):
            assert row["error"] == api["error"] and row["class"] == row["probability"] == row["top_k"] == ""
            continue
        assert row["error"] == "" and row["class"] == api["class"]
        assert float(row["probability"]) == api["top_k"][0]["prob"]
        top = [entry.rsplit("=", 1) for entry in row["top_k"].split("; ")]
        assert [(c, float(p)) for c, p in top] == [(e["class"], e["prob"]) for e in api["top_k"]]
        band = api["band"] or {}
        assert (row["band_top"], row["band_bottom"]) == (str(band.get("top", "")), str(band.get("bottom", "")))
        if api["pixel_size_m"] is None:
            assert row["pixel_size_m"] == row["field_of_view_m"] == ""
        else:
            assert float(row["pixel_size_m"]) == api["pixel_size_m"]
            assert [float(v) for v in row["field_of_view_m"].split(" x ")] == api["field_of_view_m"]
        if "unknown" in flags:
            assert row["unknown"] == ("" if api.get("unknown") is None else str(api["unknown"]).lower())
        if "abstain" in flags:
            assert row["abstain"] in ("true", "false")  # decided with the page's own minimum confidence
    if FEI_TIFF.exists():
        fei = next(r for r in rows if r["filename"] == FEI_TIFF.name)
        assert float(fei["pixel_size_m"]) == pytest.approx(3.3724e-6)
