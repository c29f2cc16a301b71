"""Reading every supported format and mode, and refusing bad files with clear reasons."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hnf.data.reading import MAX_PIXELS, percentile_scale, read_grey, read_micrograph
from hnf.errors import ImageReadError


def _grey_u8(rng: np.random.Generator, shape=(40, 60)) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_8bit_grey_round_trips_exactly(tmp_path: Path, rng, suffix: str) -> None:
    pixels = _grey_u8(rng)
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels, mode="L").save(path)
    grey, mode = read_grey(path)
    assert mode == "L"
    assert grey.dtype == np.float32 and grey.shape == pixels.shape
    np.testing.assert_allclose(grey, pixels / 255.0, atol=1e-7)


def test_jpeg_rgb_becomes_one_grey_channel(tmp_path: Path, rng) -> None:
    rgb = np.repeat(_grey_u8(rng)[..., None], 3, axis=2)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "a.jpeg", quality=95)
    grey, mode = read_grey(tmp_path / "a.jpeg")
    assert mode == "RGB" and grey.ndim == 2 and grey.shape == rgb.shape[:2]
    assert np.abs(grey - rgb[..., 0] / 255.0).mean() < 0.05


@pytest.mark.parametrize("mode", ["P", "CMYK", "RGBA", "LA", "1"])
def test_other_8bit_modes_convert_to_luminance(tmp_path: Path, rng, mode: str) -> None:
    pixels = _grey_u8(rng)
    image = Image.fromarray(pixels, mode="L").convert(mode)
    suffix = ".tif" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"x{suffix}")
    grey, read_mode = read_grey(tmp_path / f"x{suffix}")
    assert read_mode == mode
    expected = np.asarray(image.convert("RGB").convert("L"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(grey, expected, atol=2 / 255)


def test_16bit_tiff_is_percentile_scaled(tmp_path: Path, rng) -> None:
    values = rng.integers(1000, 5000, size=(50, 50)).astype(np.uint16)
    values[0, 0] = 65535  # one hot pixel must not flatten the image
    Image.fromarray(values).save(tmp_path / "deep.tif")
    grey, mode = read_grey(tmp_path / "deep.tif")
    assert mode.startswith("I;16")
    np.testing.assert_allclose(grey, percentile_scale(values), atol=1e-6)
    assert grey.min() == 0.0 and grey.max() == 1.0
    assert 0.3 < np.median(grey) < 0.7


def test_float_and_int32_tiffs(tmp_path: Path, rng) -> None:
    floats = rng.normal(0.0, 1e-3, size=(30, 30)).astype(np.float32)
    floats[3, 3] = np.nan
    Image.fromarray(floats).save(tmp_path / "f.tif")
    grey, mode = read_grey(tmp_path / "f.tif")
    assert mode == "F" and np.isfinite(grey).all() and 0 <= grey.min() and grey.max() <= 1
    ints = rng.integers(-100000, 100000, size=(30, 30)).astype(np.int32)
    Image.fromarray(ints).save(tmp_path / "i.tif")
    grey, mode = read_grey(tmp_path / "i.tif")
    assert mode == "I"
    np.testing.assert_allclose(grey, percentile_scale(ints), atol=1e-6)


def test_multipage_tiff_gives_first_page(tmp_path: Path) -> None:
    first = Image.fromarray(np.full((20, 20), 10, np.uint8))
    second = Image.fromarray(np.full((20, 20), 200, np.uint8))
    first.save(tmp_path / "stack.tif", save_all=True, append_images=[second])
    grey, _ = read_grey(tmp_path / "stack.tif")
    np.testing.assert_allclose(grey, 10 / 255.0)


def test_exif_orientation_is_applied(tmp_path: Path, rng) -> None:
    pixels = _grey_u8(rng, (20, 50))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    grey, _ = read_grey(tmp_path / "rot.jpg")
    assert grey.shape == (50, 20)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "empty file (0 bytes)"),
        ("noise.tif", bytes(range(256)) * 8, "not a readable image (unknown or corrupt format)"),
        ("notes.txt", b"hello", "not an image file (extension '.txt'; expected one of .jpg, .jpeg, .png, .bmp, .tif, .tiff)"),
        ("huge.png", _png_header_only(12000, 12000), f"12000x12000 pixels exceeds the limit of {MAX_PIXELS:,} pixels"),
    ],
)
def test_bad_files_give_reason_naming_the_file(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as caught:
        read_grey(path)
    assert caught.value.reason == reason
    assert str(caught.value) == f"{path}: {reason}"


def test_truncated_jpeg_and_missing_file(tmp_path: Path, rng) -> None:
    Image.fromarray(_grey_u8(rng, (200, 200))).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: cannot decode image \(image file is truncated"):
        read_grey(tmp_path / "cut.jpg")
    with pytest.raises(ImageReadError, match=r"absent\.png: no such file$"):
        read_grey(tmp_path / "absent.png")
    with pytest.raises(ImageReadError, match=r": not a file$"):
        read_grey(tmp_path)


def test_read_micrograph_cuts_the_nffa_band(shared_data: Path) -> None:
    path = shared_data / "nffa-sample/Nanowires/L6_0a6f18702a4a32677c74ed390f3af7af.jpg"
    kept = read_micrograph(path)
    assert (kept.width, kept.height) == (1024, 768)
    assert kept.band is not None and kept.grey.shape == (kept.band.top, 1024)
    whole = read_micrograph(path, crop_band=False)
    assert whole.band is None and whole.grey.shape == (768, 1024)


def test_reading_a_multi_frame_tiff_many_times_leaves_no_file_open(tmp_path) -> None:
    import os

    import numpy as np
    from PIL import Image

    from hnf.data.reading import read_grey

    frames = [Image.fromarray((np.full((40, 50), v)).astype(np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / "stack.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    import gc
    import warnings

    before = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(50):
            grey, _ = read_grey(path)
        gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # closed, not left to the collector
    assert grey.shape == (40, 50)


def test_percentile_scale_matches_float64_reference_in_float32(rng) -> None:
    values = rng.integers(0, 65535, size=(60, 70)).astype(np.uint16)
    low, high = np.percentile(values.astype(np.float64), [0.5, 99.5])
    reference = np.clip((values.astype(np.float64) - low) / (high - low), 0, 1)
    scaled = percentile_scale(values)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, reference, atol=1e-6)


def test_percentile_scale_makes_no_float64_copy_of_a_large_image(rng) -> None:
    import tracemalloc

    values = rng.integers(0, 65535, size=(2000, 2000)).astype(np.uint16)  # 4 M pixels
    tracemalloc.start()
    percentile_scale(values)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the float32 result and one float32 sample for the percentiles: 8 bytes a pixel; a float64
    # pipeline needs three to four times that
    assert peak < 10 * values.size, peak


def test_percentiles_of_a_strided_sample_above_the_sample_size(monkeypatch, rng) -> None:
    from hnf.data import reading

    values = rng.normal(size=(300, 300)).astype(np.float32)
    exact = percentile_scale(values)
    monkeypatch.setattr(reading, "PERCENTILE_SAMPLE", 9_000)
    approximate = reading.percentile_scale(values)
    assert np.abs(approximate - exact).max() < 0.02


def test_a_strip_too_narrow_to_classify_is_refused(tmp_path: Path) -> None:
    Image.new("L", (10000, 1), 128).save(tmp_path / "strip.png")
    with pytest.raises(ImageReadError) as err:
        read_micrograph(tmp_path / "strip.png")
    assert str(err.value) == (
        f"{tmp_path / 'strip.png'}: 10000x1 pixels is too small to classify "
        "(the short side must be at least 8 pixels)"
    )
