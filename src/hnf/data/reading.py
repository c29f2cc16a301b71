"""Decode one micrograph file into a grey image with values in [0, 1].

Every PIL mode is accepted. 8-bit data (L, RGB, P, CMYK, ...) is converted to luminance and divided
by 255. Integer and float data of higher depth (I;16 variants, I, F) is scaled robustly:
``x' = clip((x - q_0.5) / (q_99.5 - q_0.5), 0, 1)`` with the 0.5th and 99.5th percentiles, so a few
hot pixels do not flatten the image. The arithmetic is float32 (never a float64 copy of a large
image), and above :data:`PERCENTILE_SAMPLE` pixels the percentiles are those of an evenly strided
sample of that many pixels. Multi-page TIFFs give their first page; EXIF orientation is applied.
The file's instrument metadata (:mod:`hnf.data.metadata`: pixel size, settings, the databar's
rows) is read from the same open file when asked, and the band is then the databar the metadata
states, else the detector's.
An image whose short side is below :data:`MIN_SIDE` pixels is refused (nothing to classify).
Anything else ends in :class:`~hnf.errors.ImageReadError` naming the file and the reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hnf.data.band import Band, crop_above_band, detect_band
from hnf.data.metadata import Metadata, metadata_band, read_metadata
from hnf.errors import ImageReadError, ImageTooLargeError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000
"""Largest pixel count decoded (about 10,000 x 10,000); larger images are refused as possible
decompression bombs."""
MIN_SIDE = 8
"""Smallest short side, in pixels, of an image that is classified (a 1x10,000 strip is not a
micrograph, and enlarging it to the model's size would cost memory for nothing)."""
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
PERCENTILE_SAMPLE = 4_000_000
"""Pixels the robust scaling's percentiles are computed from, at most (an even stride)."""
_EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def is_image_path(path: Path) -> bool:
    """True when the file name has one of the supported image extensions."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def percentile_scale(values: np.ndarray) -> np.ndarray:
    """Scale an array to [0, 1] between its 0.5th and 99.5th percentiles (NaN/inf become 0), in
    float32: ``clip((x - q_lo) / (q_hi - q_lo), 0, 1)``. Percentiles of at most
    :data:`PERCENTILE_SAMPLE` pixels (an even stride through the image) bound the sort's memory."""
    values = np.nan_to_num(np.array(values, dtype=np.float32), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    flat = values.reshape(-1)
    sample = flat[:: -(-flat.size // PERCENTILE_SAMPLE)] if flat.size > PERCENTILE_SAMPLE else flat
    low, high = (float(q) for q in np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    values -= np.float32(low)
    values *= np.float32(1.0 / (high - low))
    return np.clip(values, 0.0, 1.0, out=values)


def pil_to_grey(image: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to a float32 HxW array in [0, 1]."""
    if image.mode in _EIGHT_BIT_MODES:
        if image.mode in {"P", "PA"}:
            image = image.convert("RGBA")
        grey = np.asarray(image.convert("L"), dtype=np.float32)  # a new array: scaled in place
        return np.divide(grey, np.float32(255.0), out=grey)
    if image.mode.startswith("I") or image.mode == "F":
        return percentile_scale(np.asarray(image))
    raise ValueError(f"unsupported PIL mode {image.mode!r}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a file")
    if not is_image_path(path):
        raise ImageReadError(
            path,
            f"not an image file (extension {path.suffix or 'none'!r}; "
            f"expected one of {', '.join(IMAGE_EXTENSIONS)})",
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")


def open_image(path: str | Path) -> Image.Image:
    """Open, decode and orient the first frame of an image file; errors name the file."""
    return open_image_and_metadata(path, metadata=False)[0]


def open_image_and_metadata(path: str | Path, metadata: bool = True) -> tuple[Image.Image, Metadata | None]:
    """:func:`open_image` and, when ``metadata``, the file's instrument metadata read from the
    open file's TIFF tags and its sidecar (:func:`hnf.data.metadata.read_metadata`), else None."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # closed on return: a multi-frame TIFF keeps its file open
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageTooLargeError(
                        path, f"{width}x{height} pixels exceeds the limit of {MAX_PIXELS:,} pixels"
                    )
                image.seek(0)
                image.load()
                meta = read_metadata(getattr(image, "tag_v2", None), path, width) if metadata else None
                return ImageOps.exif_transpose(image), meta  # a copy (detached from the file) either way
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as err:
        raise ImageReadError(path, f"refused as a decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        raise ImageReadError(path, f"cannot decode image ({err})") from None


def read_grey(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a micrograph file as a float32 HxW grey array in [0, 1]; also return its PIL mode."""
    grey, mode, _ = read_grey_and_metadata(path, metadata=False)
    return grey, mode


def read_grey_and_metadata(path: str | Path, metadata: bool = True) -> tuple[np.ndarray, str, Metadata | None]:
    """:func:`read_grey` and the file's instrument metadata (None unless ``metadata``)."""
    image, meta = open_image_and_metadata(path, metadata)
    try:
        return pil_to_grey(image), image.mode, meta
    except ValueError as err:
        raise ImageReadError(path, str(err)) from None


def find_band(grey: np.ndarray, meta: Metadata | None) -> Band | None:
    """The databar the metadata states (``source="metadata"``) when it fits the image's height,
    else the pixel detector's band (``source="detector"``) or None. ``grey``: HxW in [0, 1]."""
    band, _ = metadata_band(meta, grey.shape[0])
    return band if band is not None else detect_band(grey)


@dataclass(frozen=True)
class Micrograph:
    """A decoded micrograph: ``grey`` (float32, rows above the band when one was cut), the size
    and PIL mode of the file, the band found (None when none was found or looked for) and the
    file's instrument metadata (None when not read)."""

    grey: np.ndarray
    width: int
    height: int
    mode: str
    band: Band | None
    metadata: Metadata | None = None


def read_micrograph(path: str | Path, crop_band: bool = True, metadata: bool = True) -> Micrograph:
    """Read a file and its metadata (when ``metadata``), find its information band
    (:func:`find_band`) and (when ``crop_band``) keep the rows above it."""
    grey, mode, meta = read_grey_and_metadata(path, metadata)
    height, width = grey.shape
    if min(height, width) < MIN_SIDE:
        raise ImageReadError(
            path, f"{width}x{height} pixels is too small to classify (the short side must be at least {MIN_SIDE} pixels)"
        )
    band = find_band(grey, meta) if crop_band else None
    return Micrograph(crop_above_band(grey, band), width, height, mode, band, meta)
