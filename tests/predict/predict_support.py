"""Test support shared by tests/predict and tests/serve (their conftests put this folder on
``sys.path``, so tests ``import predict_support``):
a small seeded checkpoint, and files a lab really produces, good and bad, for the fuzz tests
(:func:`lab_files` draws ``(filename, bytes, readable)``; ``readable`` says whether hnf must
decode it).
"""

from __future__ import annotations

import io
import struct
import zlib

from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image

from hnf.data.synth.micrograph import SYNTH_CLASSES
from hnf.models.factory import build_classifier
from hnf.train.checkpoint import CheckpointMeta, Preprocessing, save_checkpoint

TINY = {"embed_dim": 48, "num_heads": 2, "readout_heads": 2}
"""hnf_small's structure (three scales, ODE, graph, gate) at a fraction of its width: fast tests."""


def make_checkpoint(directory: Path, name: str = "hnf_small", overrides: dict | None = None,
                    preprocessing: Preprocessing | None = None, seed: int = 0, sharpen: float = 25.0) -> Path:
    """An untrained, seeded checkpoint; the last linear layer's weights are scaled by ``sharpen``
    so that different images get clearly different, peaked predictions."""
    torch.manual_seed(seed)
    pre = preprocessing or Preprocessing()
    overrides = dict(TINY if overrides is None else overrides)
    extra = {"class_names": list(SYNTH_CLASSES)} if name.startswith("hnf_llm") else {}
    model = build_classifier(name, num_classes=len(SYNTH_CLASSES), in_chans=pre.in_chans,
                             img_size=pre.img_size, **extra, **overrides)
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(sharpen)
    return save_checkpoint(directory, model, CheckpointMeta(name, list(SYNTH_CLASSES), overrides, pre))


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def texture(seed: int, height: int = 80, width: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    return np.clip(0.5 + 0.3 * np.sin(x / (3 + seed % 5)) * np.cos(y / 4) + rng.normal(0, 0.05, (height, width)), 0, 1)


def jpeg(seed: int) -> bytes:
    return _encode(Image.fromarray((texture(seed) * 255).astype(np.uint8)), "JPEG", quality=90)


def png_huge_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels (valid CRCs), with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def bmp_huge_header(width: int, height: int) -> bytes:
    """A BMP whose header declares a huge image, with almost no pixel data."""
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 16


def tiff16(seed: int) -> bytes:
    return _encode(Image.fromarray((texture(seed) * 40000 + 1000).astype(np.uint16)), "TIFF")


def tiff_float(seed: int) -> bytes:
    values = (texture(seed) * 3.5 - 1.0).astype(np.float32)
    values[0, 0] = np.nan  # a dead pixel must not spoil the image
    return _encode(Image.fromarray(values, mode="F"), "TIFF")


def cmyk(seed: int, fmt: str) -> bytes:
    grey = (texture(seed) * 255).astype(np.uint8)
    rgb = Image.fromarray(np.stack([grey, grey // 2, 255 - grey], -1), "RGB")
    return _encode(rgb.convert("CMYK"), fmt)


def palette_png(seed: int) -> bytes:
    rgb = Image.fromarray((np.stack([texture(seed)] * 3, -1) * 255).astype(np.uint8), "RGB")
    return _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


def one_of_each() -> list[tuple[str, bytes, bool]]:
    """One file of every kind :func:`lab_files` draws (explicit examples for the fuzz tests)."""
    data = jpeg(7)
    return [
        ("cut.jpg", data[: len(data) // 2], False), ("noise.tif", bytes(range(256)) * 3, False),
        ("magic.jpg", b"\xff\xd8\xff" + b"\x00" * 40, False), ("empty.tif", b"", False),
        ("bomb.png", png_huge_header(100_000, 100_000), False), ("bomb.bmp", bmp_huge_header(60_000, 60_000), False),
        ("sixteen.tif", tiff16(1), True), ("float.tiff", tiff_float(2), True), ("cmyk.jpg", cmyk(3, "JPEG"), True),
        ("cmyk.tif", cmyk(4, "TIFF"), True), ("palette.png", palette_png(5), True),
        ("notes.png", b"magnification 5000x\n" * 3, False),
    ]


@st.composite
def lab_files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """One good or bad micrograph file: ``(name, bytes, readable)``."""
    seed = draw(st.integers(0, 1000))
    kind = draw(st.sampled_from([
        "truncated_jpeg", "random_tif", "random_with_jpeg_magic", "zero_bytes", "huge_png", "huge_bmp",
        "tiff16", "tiff_float", "cmyk_jpeg", "cmyk_tiff", "palette_png", "text_as_png",
    ]))
    if kind == "truncated_jpeg":
        data = jpeg(seed)
        cut = draw(st.integers(1, len(data) - 3))
        return "cut.jpg", data[:cut], False
    if kind == "random_tif":
        return "noise.tif", draw(st.binary(min_size=1, max_size=2048)), False
    if kind == "random_with_jpeg_magic":
        return "magic.jpg", b"\xff\xd8\xff" + draw(st.binary(min_size=0, max_size=512)), False
    if kind == "zero_bytes":
        return draw(st.sampled_from(["empty.png", "empty.tif", "empty.jpg"])), b"", False
    if kind == "huge_png":
        side = draw(st.integers(20_000, 2**31 - 1))
        return "bomb.png", png_huge_header(side, side), False
    if kind == "huge_bmp":
        side = draw(st.integers(20_000, 2**20))
        return "bomb.bmp", bmp_huge_header(side, side), False
    if kind == "tiff16":
        return "sixteen.tif", tiff16(seed), True
    if kind == "tiff_float":
        return "float.tiff", tiff_float(seed), True
    if kind == "cmyk_jpeg":
        return "cmyk.jpg", cmyk(seed, "JPEG"), True
    if kind == "cmyk_tiff":
        return "cmyk.tif", cmyk(seed, "TIFF"), True
    if kind == "palette_png":
        return "palette.png", palette_png(seed), True
    return "notes.png", b"magnification 5000x, 20 kV\n" * draw(st.integers(1, 50)), False
