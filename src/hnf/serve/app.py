"""The REST service: FastAPI app around one :class:`hnf.predict.Predictor`.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

* ``POST /v1/predict``: multipart form, one or many files in the field ``files``; query
  ``top_k`` (1 to the number of classes, default 5), ``explain`` (default false) and
  ``min_confidence`` (0 to 1, default none). Returns
  ``{"model", "results": [...]}``, one result per file in upload order: ``filename``, ``class``,
  ``top_k`` (``[{class, prob}]``), ``probabilities`` (class -> prob, calibrated with the
  checkpoint's temperature), ``abstain`` (top probability below ``min_confidence``), ``unknown``
  (the image looks unlike every class; null without the checkpoint's detector), ``ood_score``
  (its score, higher is stranger; null likewise), ``band`` (``{top, bottom}``
  or null), ``width``, ``height``, ``mode``, ``pixel_size_m`` and ``field_of_view_m``
  (``[width, height]`` of the rows above the band, metres; null where the file's metadata states
  no pixel size), ``error`` (null) and, with ``explain``,
  ``explanation`` (``method``, per-scale expert shares, the model's input and the heat-map
  overlay as PNG data URLs). A file that fails gets ``error`` and ``status`` instead; when every
  file fails the response has the first failure's status (4xx) with ``error`` and ``results``.
* ``GET /v1/classes``, ``GET /v1/model``, ``GET /healthz``; ``GET /`` is the web page.

Limits: the request body (``max_upload_bytes``, default 50 MB; 413), the pixel count declared in
an image's header (``max_pixels``, default and ceiling :data:`hnf.data.reading.MAX_PIXELS`; 413,
checked before decoding, so decompression bombs are refused cheaply), the pixels all images of
one request declare together (``max_request_pixels``, default 200 million; 413 for the whole
request, before anything is decoded), the number of files per request (``max_files``; 413).
Memory: at most ``decode_slots`` images (default 2) are decoded at once across all requests,
and each image's full-resolution array is dropped as soon as its model input is made (kept only
for an explanation). Decoding one 8-bit image of P pixels peaks at about 8P bytes (the decoded
file, its copies on the way to float32, the float32 grey image), so the defaults bound decoding
to about 2 GB whatever the requests. The type is sniffed from the first bytes (JPEG, PNG, BMP, TIFF;
otherwise 415), never taken from the file name. Undecodable images give 422. Every error is JSON:
``{"error": message, "status": code}``.

Concurrency: requests are decoded in worker threads and the model runs under the predictor's
lock on per-request tensors; the app holds no mutable state besides read-only metadata.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hnf import __version__
from hnf.data.reading import MAX_PIXELS
from hnf.errors import HnfError, ImageReadError
from hnf.predict import Prediction, Predictor, flops_per_image

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_FILES = 64
DEFAULT_MAX_REQUEST_PIXELS = 200_000_000
DEFAULT_DECODE_SLOTS = 2

_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\xff\xd8\xff", ".jpg", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", ".png", "PNG"),
    (b"BM", ".bmp", "BMP"),
    (b"II*\x00", ".tif", "TIFF"),
    (b"MM\x00*", ".tif", "TIFF"),
    (b"II+\x00", ".tif", "TIFF"),
    (b"MM\x00+", ".tif", "TIFF"),
)


def sniff_image_type(head: bytes) -> tuple[str, str] | None:
    """``(extension, format name)`` from a file's first bytes, or None when not a supported image."""
    for magic, extension, name in _SIGNATURES:
        if head.startswith(magic):
            return extension, name
    return None


class UploadError(Exception):
    """An uploaded file, or a whole request, was refused: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


def _megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


class UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, by Content-Length when
    the client sends it, else by counting the bytes as they arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: int | None) -> str:
        what = f"upload of {_megabytes(size)}" if size is not None else "upload"
        return f"{what} exceeds the limit of {_megabytes(self.max_bytes)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, self._message(int(length)))
            await response(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message(None))
            return message

        await self.app(scope, counting, send)


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


@dataclass
class ServeSettings:
    """The service's limits (see the module docstring)."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    max_files: int = DEFAULT_MAX_FILES
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    decode_slots: int = DEFAULT_DECODE_SLOTS


def class_description(name: str) -> str | None:
    """The first description of ``name`` in the shipped corpus, or None when it has none."""
    try:
        from hnf.text.corpus import match_class
    except ImportError:  # pragma: no cover - the text package is part of hnf
        return None
    found = match_class(name)
    if found is None or not found.entries:
        return None
    return str(found.entries[0]["text"])


def _check_pixels(data: bytes, filename: str, max_pixels: int) -> int:
    """Refuse an image whose header declares more than ``max_pixels`` (before decoding); return
    the pixels it declares (0 for a header PIL cannot read: the reader reports that file)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError as err:  # PIL refuses to open beyond twice its own limit
        found = re.search(r"\((\d+) pixels\)", str(err))
        declared = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise UploadError(
            413, f"{filename}: refused as a decompression bomb (its header declares {declared}; "
            f"the limit is {max_pixels:,} pixels)"
        ) from None
    except Exception:  # noqa: BLE001 - undecodable headers are reported by the reader below
        return 0
    if width * height > max_pixels:
        raise UploadError(
            413, f"{filename}: {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels"
        )
    return width * height


def _result_json(row: Prediction, predictor: Predictor, explain: bool) -> dict[str, Any]:
    from hnf.explain import data_url, overlay_png, view_png

    probs = row.probs
    assert probs is not None and row.prepared is not None
    result: dict[str, Any] = {
        "filename": row.path,
        "class": row.top_k[0]["class"],
        "top_k": row.top_k,
        "probabilities": {c: float(p) for c, p in zip(predictor.classes, probs)},
        "band": row.band.as_dict() if row.band is not None else None,
        "width": row.width,
        "height": row.height,
        "mode": row.mode,
        "pixel_size_m": row.pixel_size_m,
        "field_of_view_m": list(row.field_of_view_m) if row.field_of_view_m is not None else None,
        "abstain": row.abstain,
        "unknown": row.unknown,
        "ood_score": row.ood_score,
        "error": None,
    }
    if explain and row.explanation is not None:
        result["explanation"] = {
            **row.explanation.to_json(),
            "input_png": data_url(view_png(row.prepared.view)),
            "overlay_png": data_url(overlay_png(row.prepared.view, row.explanation)),
        }
    return result


def _screen_upload(filename: str, data: bytes, max_pixels: int) -> tuple[str, int]:
    """The suffix of an upload's sniffed type and the pixels its header declares; raises
    :class:`UploadError` for an empty, unsupported or too large file."""
    if not data:
        raise UploadError(400, f"{filename}: empty file (0 bytes)")
    kind = sniff_image_type(data[:16])
    if kind is None:
        raise UploadError(415, f"{filename}: not a supported image (its content is not JPEG, PNG, BMP or TIFF)")
    return kind[0], _check_pixels(data, filename, max_pixels)


def predict_uploads(predictor: Predictor, settings: ServeSettings, uploads: list[tuple[str, bytes]],
                    top_k: int, explain: bool, decode_slots: threading.Semaphore | None = None,
                    min_confidence: float | None = None) -> list[dict[str, Any]]:
    """Results for ``(filename, bytes)`` uploads (the blocking part of ``POST /v1/predict``).

    Every header is screened first; when the images together declare more than
    ``settings.max_request_pixels`` the whole request is refused (:class:`UploadError`, 413)
    before one is decoded. Each decode then holds one of ``decode_slots`` (shared by the app's
    requests), and keeps the full-resolution image only when ``explain`` needs it."""
    results: list[dict[str, Any] | None] = [None] * len(uploads)
    screened: list[tuple[int, str, bytes, str]] = []
    declared = 0
    for index, (filename, data) in enumerate(uploads):
        try:
            suffix, pixels = _screen_upload(filename, data, settings.max_pixels)
        except UploadError as err:
            results[index] = {"filename": filename, "error": err.message, "status": err.status}
            continue
        screened.append((index, filename, data, suffix))
        declared += pixels
    if declared > settings.max_request_pixels:
        raise UploadError(
            413, f"{len(screened)} images of {declared:,} pixels in all exceed the limit of "
            f"{settings.max_request_pixels:,} decoded pixels per request"
        )
    prepared, names, slots = [], [], []
    with tempfile.TemporaryDirectory(prefix="hnf-serve-") as tmp:
        for index, filename, data, suffix in screened:
            path = Path(tmp) / f"upload-{index}{suffix}"
            path.write_bytes(data)
            try:
                with decode_slots or contextlib.nullcontext():
                    item = predictor.prepare(path)
                    if not explain:
                        item.grey = None  # the full image is only drawn by explanations
            except ImageReadError as err:
                results[index] = {"filename": filename, "error": f"{filename}: {err.reason}", "status": err.http_status}
                continue
            except (HnfError, ValueError, OSError, MemoryError) as err:
                results[index] = {"filename": filename, "error": f"{filename}: cannot prepare image ({err})",
                                  "status": 422}
                continue
            prepared.append(item)
            names.append(filename)
            slots.append(index)
    for index, row in zip(slots, predictor.predict_prepared(prepared, names, top_k, explain, min_confidence)):
        results[index] = _result_json(row, predictor, explain)
    return [r for r in results if r is not None]


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor`` (loaded once, shared by every request)."""
    from hnf.serve.page import INDEX_HTML

    settings = settings or ServeSettings()
    settings.max_pixels = min(settings.max_pixels, MAX_PIXELS)
    if settings.decode_slots < 1:
        raise ValueError(f"decode_slots must be at least 1, got {settings.decode_slots}")
    decode_slots = threading.BoundedSemaphore(settings.decode_slots)
    meta = predictor.meta
    pre = meta.preprocessing
    params = sum(p.numel() for p in predictor.model.parameters())
    flops = flops_per_image(predictor.model, pre.in_chans, pre.img_size)
    classes = [{"index": i, "name": c, "description": class_description(c)} for i, c in enumerate(predictor.classes)]
    model_info = {
        "name": meta.model,
        "classes": list(predictor.classes),
        "num_classes": len(predictor.classes),
        "version": __version__,
        "checkpoint": {"format": meta.format, "hnf_version": meta.hnf_version, "epoch": meta.epoch,
                       "step": meta.step, "weights_sha256": meta.weights_sha256},
        "flops": flops,
        "flops_note": f"per 1x{pre.in_chans}x{pre.img_size}x{pre.img_size} image, torch FlopCounterMode (multiply-add = 2)",
        "params": int(params),
        "temperature": predictor.trust.temperature,
        "unknown_inputs": ({"method": predictor.trust.ood.method,
                            "threshold": predictor.trust.ood.thresholds[predictor.trust.ood.method],
                            "validation_accepted": predictor.trust.ood.accept}
                           if predictor.trust.ood is not None else None),
        "model_overrides": dict(meta.model_overrides),
        "preprocessing": {k: getattr(pre, k) for k in ("img_size", "resize", "mean", "std", "in_chans", "crop_band", "normalisation")},
        "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                   "max_files": settings.max_files, "max_request_pixels": settings.max_request_pixels,
                   "decode_slots": settings.decode_slots},
    }

    app = FastAPI(
        title="hnf",
        version=__version__,
        description=f"Classify electron micrographs with {meta.model} ({len(predictor.classes)} classes). "
        "The web page is at `/`.",
    )
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
            parts.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
        return error_response(422 if parts else 400, "; ".join(parts) or "invalid request")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(INDEX_HTML)

    @app.get("/healthz", summary="Liveness: the model is loaded")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": meta.model}

    @app.get("/v1/classes", summary="The classes, in logit order, with their descriptions")
    async def get_classes() -> dict[str, Any]:
        return {"classes": classes}

    @app.get("/v1/model", summary="Model name, classes, versions, FLOPs, preprocessing and limits")
    async def get_model() -> dict[str, Any]:
        return model_info

    @app.post("/v1/predict", summary="Classify one or many micrographs (multipart field `files`)")
    async def post_predict(
        files: Annotated[list[UploadFile], File(description="Images: JPEG, PNG, BMP or TIFF (8/16-bit, float); "
                                                "the type is read from the content")],
        top_k: Annotated[int, Query(ge=1, description="How many classes to list per image")] = 5,
        explain: Annotated[bool, Query(description="Add the heat map and expert shares")] = False,
        min_confidence: Annotated[float | None, Query(
            ge=0.0, le=1.0, description="Abstain (abstain: true) below this calibrated top probability")] = None,
    ) -> JSONResponse:
        if len(files) > settings.max_files:
            return error_response(413, f"{len(files)} files exceed the limit of {settings.max_files} per request")
        uploads = []
        for number, upload in enumerate(files, 1):
            uploads.append((upload.filename or f"file {number}", await upload.read()))
        try:
            results = await run_in_threadpool(
                predict_uploads, predictor, settings, uploads, min(top_k, len(predictor.classes)), explain,
                decode_slots, min_confidence,
            )
        except UploadError as err:
            return error_response(err.status, err.message)
        body = {"model": meta.model, "results": results}
        failed = [r for r in results if r.get("error")]
        if results and len(failed) == len(results):
            return error_response(failed[0]["status"], failed[0]["error"], **body)
        return JSONResponse(body)

    return app
