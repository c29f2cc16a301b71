"""Synthetic micrographs: determinism, layout, labels, bands, CLI, and how learnable they are."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hnf.cli import app
from hnf.data.synth import SYNTH_CLASSES, render_micrograph, synth_image, write_synthetic_dataset

NFFA = (
    "Biological", "Fibres", "Films_Coated_Surface", "MEMS_devices_and_electrodes", "Nanowires",
    "Particles", "Patterned_surface", "Porous_Sponge", "Powder", "Tips",
)
DIFFICULTY_BENCH = Path(__file__).resolve().parents[2] / "bench" / "synth_difficulty.py"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_class_names_in_nffa_order() -> None:
    assert SYNTH_CLASSES == NFFA


@pytest.mark.parametrize("name", NFFA)
def test_every_class_renders_in_range(name: str) -> None:
    image = render_micrograph(name, 96, np.random.default_rng(3))
    assert image.shape == (96, 96) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.02  # not blank


@pytest.mark.parametrize("size", [161, 256, 257])
def test_large_sizes_render_via_the_half_size_scene(size: int) -> None:
    image = render_micrograph("Particles", size, np.random.default_rng(0))
    assert image.shape == (size, size) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.02


def test_png_encoder_is_lossless_and_readable() -> None:
    import io

    from hnf.data.synth.writer import png_grey8

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 200), (64, 64)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        pixels[0, 0], pixels[-1, -1] = 0, 255  # differences that wrap around mod 256
        with Image.open(io.BytesIO(png_grey8(pixels))) as img:
            assert img.format == "PNG" and img.mode == "L" and not img.info
            assert np.array_equal(np.asarray(img), pixels)


def test_unknown_class_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown synthetic class"):
        render_micrograph("Cheese", 64, np.random.default_rng(0))


def test_dataset_layout_counts_and_size(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "ds", per_class=2, size=64, seed=1)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(NFFA)
    rows = _labels(root)
    assert len(rows) == 20 and list(rows[0]) == ["path", "label", "band_top", "band_bottom"]
    for row in rows:
        with Image.open(root / row["path"]) as img:
            assert img.mode == "L" and img.size == (64, 64)
            assert not img.info  # no metadata chunks
        assert row["path"].startswith(row["label"] + "/")
        assert row["band_top"] == row["band_bottom"] == ""
    assert not list(root.rglob("*.tmp"))


def test_same_arguments_give_identical_files(tmp_path: Path) -> None:
    a = write_synthetic_dataset(tmp_path / "a", per_class=2, size=64, seed=5)
    b = write_synthetic_dataset(tmp_path / "b", per_class=2, size=64, seed=5)
    assert _files(a) == _files(b)


def test_images_do_not_depend_on_count_or_band_prob(tmp_path: Path) -> None:
    small = write_synthetic_dataset(tmp_path / "small", per_class=1, size=64, seed=5)
    large = write_synthetic_dataset(tmp_path / "large", per_class=3, size=64, seed=5)
    for rel, data in _files(small).items():
        if rel.endswith(".png"):
            assert _files(large)[rel] == data
    plain, _ = synth_image(5, 4, 0, 64)
    again, band = synth_image(5, 4, 0, 64, band_prob=0.0)
    assert band is None and np.array_equal(plain, again)


def test_different_seeds_give_different_images() -> None:
    for class_index in range(len(NFFA)):
        a, _ = synth_image(0, class_index, 0, 64)
        b, _ = synth_image(1, class_index, 0, 64)
        c, _ = synth_image(0, class_index, 1, 64)
        assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_band_prob_one_records_bands(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "ds", per_class=2, size=128, seed=2, band_prob=1.0)
    rows = _labels(root)
    assert len(rows) == 20
    for row in rows:
        top, bottom = int(row["band_top"]), int(row["band_bottom"])
        assert 0 < top <= bottom < 128


def test_cli_writes_identical_files_twice(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["data", "synth", "--per-class", "1", "--size", "64", "--seed", "7"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "10 images" in first.output and "images/s" in first.output
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert len(_labels(tmp_path / "a")) == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "32"], "at least 64"),
        (["--per-class", "0"], "at least 1"),
        (["--band-prob", "1.5"], "[0, 1]"),
        (["--band-prob", "-0.1"], "[0, 1]"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), *extra])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_library_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        write_synthetic_dataset(tmp_path, per_class=1, size=63, seed=0)
    with pytest.raises(ValueError, match="per_class"):
        write_synthetic_dataset(tmp_path, per_class=0, size=64, seed=0)
    with pytest.raises(ValueError, match="band_prob"):
        write_synthetic_dataset(tmp_path, per_class=1, size=64, seed=0, band_prob=2.0)


@pytest.mark.slow
def test_classes_need_a_cnn_not_a_pixel_model() -> None:
    """Logistic regression on 32x32 pixels stays below 60%; a small CNN clearly beats 80%."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("synth_difficulty", DIFFICULTY_BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    downsample, logreg_top1, synth_arrays = bench.downsample, bench.logreg_top1, bench.synth_arrays

    torch.set_num_threads(2)
    # rendered at 128 and block-averaged to 64, as a micrograph is downsampled for a model
    train_x, train_y = synth_arrays(per_class=100, size=128, seed=0)
    test_x, test_y = synth_arrays(per_class=20, size=128, seed=0, first=100)
    train_x, test_x = downsample(train_x, 64), downsample(test_x, 64)
    linear = logreg_top1(train_x, train_y, test_x, test_y)
    cnn = float((bench.cnn_predictions(train_x, train_y, test_x, epochs=8) == test_y).mean())
    print(f"logreg top-1 {linear:.3f}, CNN top-1 {cnn:.3f}")
    assert linear < 0.6
    assert cnn > 0.8
