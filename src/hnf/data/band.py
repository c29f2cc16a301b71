"""The microscope's information band: detect it, cut it away, and burn one into synthetic images.

SEMs burn a band of text into the frame (scale bar, EHT, WD, magnification, detector, logos). It
is a block of rows in the lower part of the image whose background is flat and extreme (near
white or near black), carrying text of the opposite extreme, often bounded by one-pixel separator
lines, and sometimes followed by more image content below it. A classifier that sees the band can
learn the band instead of the material, so it is cut away: :func:`crop_above_band` keeps the rows
above it.

Detection works on per-row statistics of the grey image ``g`` in [0, 1] (``H`` rows, ``W``
columns). For each row ``r`` and each polarity (bright background ``level = q75(g[r])``, dark
background ``level = q25(g[r])``):

* ``flat[r]``: share of pixels within ``FLAT_TOLERANCE`` of ``level`` (the band's background
  is printed, not imaged, so it is flat; imaged regions carry shot noise);
* ``extreme[r]``: share of pixels that are near white or near black (background or text).

A row is a *band row* when, for either polarity, ``level`` is extreme, ``flat[r] >= MIN_FLAT`` and
``extreme[r] >= MIN_EXTREME``. Separator lines pass this test with the opposite polarity. A band
is a maximal run of band rows (gaps of up to ``MAX_GAP`` rows bridged) that starts in the lower
part of the frame (``top >= MIN_TOP_FRACTION * H``), is between ``MIN_HEIGHT_FRACTION`` and
``MAX_HEIGHT_FRACTION`` of ``H`` tall, and looks printed: over its background rows (separator
lines excluded) at least ``MIN_PRINTED_FLAT`` of the pixels lie within ``PRINTED_TOLERANCE`` of the
band's level, and between ``MIN_INK`` and ``MAX_INK`` of them are ink (at least ``INK_CONTRAST``
away from the level).
Requiring the run to start low rejects images that are dark or bright as a whole; the
printed-look test rejects flat imaged regions (no ink, or shot noise). Where saturated content
runs straight into the band, the run is also tried from each *edge* inside it (a row whose median
differs from the previous row's by at least ``EDGE_JUMP``, as a separator line does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLAT_TOLERANCE = 0.05
MIN_FLAT = 0.5
MIN_EXTREME = 0.85
BRIGHT_LEVEL = 0.8
DARK_LEVEL = 0.2
MAX_GAP = 2
EDGE_JUMP = 0.5
MIN_TOP_FRACTION = 0.5
MIN_HEIGHT_FRACTION = 0.025
MAX_HEIGHT_FRACTION = 0.45
MIN_HEIGHT_ROWS = 6
PRINTED_TOLERANCE = 0.03
MIN_PRINTED_FLAT = 0.7
INK_CONTRAST = 0.4
MIN_INK = 0.01
MAX_INK = 0.25
ROW_BLOCK_PIXELS = 1 << 20
"""Row statistics are computed over blocks of rows of about this many pixels, so their temporary
arrays stay a few MB whatever the image's size (each row's statistics are its own: the result is
the same as over the whole image at once)."""


BAND_SOURCES = ("detector", "metadata")


@dataclass(frozen=True)
class Band:
    """Rows ``top`` to ``bottom`` (0-based, inclusive) hold the information band; ``source`` says
    where they came from: ``"detector"`` (:func:`detect_band`, from the pixels) or ``"metadata"``
    (the rows the file's instrument metadata states, :func:`hnf.data.metadata.metadata_band`)."""

    top: int
    bottom: int
    source: str = "detector"

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    def as_dict(self) -> dict[str, int | str]:
        return {"top": self.top, "bottom": self.bottom, "source": self.source}


def _band_rows(grey: np.ndarray) -> np.ndarray:
    """Per row: does it look like a row of an information band? (see the module docstring)."""
    extreme_share = ((grey >= BRIGHT_LEVEL) | (grey <= DARK_LEVEL)).mean(axis=1)
    is_band = np.zeros(grey.shape[0], dtype=bool)
    dark_level, bright_level = np.quantile(grey, [0.25, 0.75], axis=1)
    for level, is_extreme_level in (
        (bright_level, bright_level >= BRIGHT_LEVEL),
        (dark_level, dark_level <= DARK_LEVEL),
    ):
        flat_share = (np.abs(grey - level[:, None]) <= FLAT_TOLERANCE).mean(axis=1)
        is_band |= is_extreme_level & (flat_share >= MIN_FLAT) & (extreme_share >= MIN_EXTREME)
    return is_band


def _row_statistics(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(is_band, row_median)`` per row, computed over blocks of rows of at most
    :data:`ROW_BLOCK_PIXELS` pixels. Shapes: grey (H, W) -> (H,) bool, (H,) float."""
    rows = max(1, ROW_BLOCK_PIXELS // max(1, grey.shape[1]))
    is_band = np.empty(grey.shape[0], dtype=bool)
    row_median = np.empty(grey.shape[0], dtype=np.float64)
    for start in range(0, grey.shape[0], rows):
        block = grey[start : start + rows]
        is_band[start : start + rows] = _band_rows(block)
        row_median[start : start + rows] = np.median(block, axis=1)
    return is_band, row_median


def _looks_printed(block: np.ndarray) -> bool:
    """Flat extreme background with some ink of the opposite extreme (separator rows excluded)."""
    level = float(np.median(block))
    body = block[np.abs(np.median(block, axis=1) - level) <= FLAT_TOLERANCE]
    if body.size == 0:
        return False
    flat = float((np.abs(body - level) <= PRINTED_TOLERANCE).mean())
    ink = float((np.abs(body - level) >= INK_CONTRAST).mean())
    return flat >= MIN_PRINTED_FLAT and MIN_INK <= ink <= MAX_INK


def _runs(mask: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Maximal runs of True in ``mask`` as (first, last) inclusive, bridging gaps <= max_gap."""
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) > max_gap + 1)
    starts = np.concatenate(([rows[0]], rows[breaks + 1]))
    ends = np.concatenate((rows[breaks], [rows[-1]]))
    return list(zip(starts.tolist(), ends.tolist()))


def detect_band(grey: np.ndarray) -> Band | None:
    """Find the information band of a grey image (HxW floats in [0, 1]); None when there is none.

    When several runs qualify, the tallest is taken (text lines of one band are bridged; a stray
    flat stripe is shorter than a band).
    """
    if grey.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {tuple(grey.shape)}")
    height = grey.shape[0]
    min_rows = max(MIN_HEIGHT_ROWS, int(np.ceil(MIN_HEIGHT_FRACTION * height)))
    if height < 4 * min_rows:
        return None
    is_band, row_median = _row_statistics(grey)
    edges = np.flatnonzero(np.abs(np.diff(row_median)) >= EDGE_JUMP) + 1
    best: Band | None = None
    for first, last in _runs(is_band, MAX_GAP):
        starts = [first] + [int(e) for e in edges if first < e <= last - min_rows]
        for top in starts:
            rows = last - top + 1
            if top < MIN_TOP_FRACTION * height or not min_rows <= rows <= MAX_HEIGHT_FRACTION * height:
                continue
            if not _looks_printed(grey[top : last + 1]):
                continue
            if best is None or rows > best.height:
                best = Band(top, last)
            break
    return best


def crop_above_band(grey: np.ndarray, band: Band | None) -> np.ndarray:
    """Keep the rows above the band (the whole image when ``band`` is None)."""
    return grey if band is None else grey[: band.top]


def burn_info_band(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Band]:
    """Burn an SEM-style information band into a copy of ``image`` (HxW floats in [0, 1]).

    The band is 6-14% of the height, bright (60%) or dark, with separator lines of the opposite
    polarity (70%), two or three lines of glyph-like text, a scale bar and a logo block. In half
    of the images more content follows below the band, as on many instruments.
    """
    out = np.array(image, dtype=np.float32, copy=True)
    height, width = out.shape
    band_rows = max(10, int(round(height * rng.uniform(0.06, 0.14))))
    below = 0 if rng.random() < 0.5 else int(round(height * rng.uniform(0.005, 0.06)))
    top = height - band_rows - below
    bottom = top + band_rows - 1
    bright = rng.random() < 0.6
    background = rng.uniform(0.93, 1.0) if bright else rng.uniform(0.0, 0.07)
    ink = rng.uniform(0.0, 0.08) if bright else rng.uniform(0.92, 1.0)

    band = np.full((band_rows, width), background, dtype=np.float32)
    glyph_h = max(3, band_rows // 5)
    lines = int(rng.integers(2, 4))
    line_gap = band_rows / (lines + 1)
    for line in range(lines):
        row = int(line_gap * (line + 1) - glyph_h / 2)
        cells = width // max(2, glyph_h // 2)
        glyphs = rng.random((glyph_h, cells)) < 0.25
        glyphs[:, rng.random(cells) < 0.3] = False  # spaces between words
        strip = np.repeat(glyphs, max(2, glyph_h // 2), axis=1)[:, :width]
        strip[:, : int(width * 0.12)] = False
        r0, r1 = max(1, row), min(band_rows - 1, row + glyph_h)
        band[r0:r1, : strip.shape[1]][strip[: r1 - r0]] = ink
    bar_len = int(width * rng.uniform(0.06, 0.12))
    bar_row = int(band_rows * 0.55)
    band[bar_row : bar_row + 2, 4 : 4 + bar_len] = ink
    logo_w = int(width * rng.uniform(0.04, 0.08))
    band[2 : band_rows - 2, width - logo_w - 3 : width - 3] = ink
    if rng.random() < 0.7:
        band[0, :] = ink
        band[-1, :] = ink
    band += rng.normal(0.0, 0.008, size=band.shape).astype(np.float32)
    out[top : bottom + 1] = np.clip(band, 0.0, 1.0)
    return out, Band(top, bottom)
