"""Information band detection: the acceptance numbers of the foundation issue, and the parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hnf.data.band import Band, burn_info_band, crop_above_band, detect_band
from hnf.data.dataset import index_dataset
from hnf.data.reading import read_grey

from ..conftest import textured


def test_nffa_sample_bands_match_hand_checked_rows(shared_data: Path) -> None:
    truth = json.loads((shared_data / "nffa-sample/banners.json").read_text())
    for name, rows in truth.items():
        if name.startswith("_"):
            continue
        band = detect_band(read_grey(shared_data / "nffa-sample" / name)[0])
        assert band is not None, name
        assert abs(band.top - rows["top"]) <= 4, (name, band, rows)
        assert abs(band.bottom - rows["bottom"]) <= 4, (name, band, rows)


@pytest.mark.parametrize("dataset", ["uhcs-3class", "neu-surface"])
def test_band_free_real_datasets_are_rarely_flagged(shared_data: Path, dataset: str) -> None:
    samples = index_dataset(shared_data / dataset).samples
    flagged = [s.path.name for s in samples if detect_band(read_grey(s.path)[0]) is not None]
    assert len(flagged) <= 0.01 * len(samples), flagged


def test_burnt_bands_on_textures_are_found(rng: np.random.Generator) -> None:
    found = flagged = 0
    trials = 200
    for _ in range(trials):
        size = int(rng.choice([128, 224, 256, 384]))
        image = textured(rng, size, size)
        flagged += detect_band(image) is not None
        burnt, truth = burn_info_band(image, rng)
        band = detect_band(burnt)
        found += band is not None and abs(band.top - truth.top) <= 4
    assert found >= 0.98 * trials
    assert flagged <= 0.01 * trials


def test_band_below_content_and_dark_polarity() -> None:
    image = np.full((200, 300), 0.5, np.float32) + np.random.default_rng(1).normal(0, 0.05, (200, 300)).astype(np.float32)
    image = np.clip(image, 0, 1)
    image[150:180] = 0.02  # dark band
    image[160:166, 20:200:7] = 0.98  # white text
    band = detect_band(image)
    assert band == Band(150, 179)
    assert crop_above_band(image, band).shape == (150, 300)
    assert crop_above_band(image, None) is image


def test_whole_dark_or_bright_images_are_not_bands() -> None:
    assert detect_band(np.zeros((100, 100), np.float32)) is None
    assert detect_band(np.ones((100, 100), np.float32)) is None
    with pytest.raises(ValueError, match="expected a 2-D grey image"):
        detect_band(np.zeros((3, 10, 10)))


def test_row_blocks_give_the_same_band_as_the_whole_image(monkeypatch, rng: np.random.Generator) -> None:
    from hnf.data import band as band_module

    images = [burn_info_band(textured(rng, 160, 200), rng)[0] for _ in range(6)]
    whole = [detect_band(image) for image in images]
    assert any(found is not None for found in whole)
    monkeypatch.setattr(band_module, "ROW_BLOCK_PIXELS", 7 * 200)  # blocks of 7 rows
    assert [detect_band(image) for image in images] == whole


def test_detecting_the_band_of_a_large_image_needs_little_memory(rng: np.random.Generator) -> None:
    import tracemalloc

    image = np.full((4000, 4000), 0.5, np.float32)  # 64 MB
    image[::7] = rng.random(4000, dtype=np.float32)
    tracemalloc.start()
    detect_band(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 24e6, peak  # row blocks of 1 M pixels; the whole image at once needs > 100 MB
