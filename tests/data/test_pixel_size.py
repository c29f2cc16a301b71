"""A common physical scale (--pixel-size): resampling, one scale for two copies, warnings, and
train -> checkpoint -> predict end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from hnf.data.dataset import Sample
from hnf.data.reading import read_micrograph
from hnf.data.torch_dataset import MicrographDataset, resize_for_model, resize_to_pixel_size
from hnf.data.transforms import build_eval_transform
from hnf.errors import HnfError
from hnf.predict import prepare_grey
from hnf.train.checkpoint import Preprocessing
from hnf.train.config import TrainConfig
from hnf.train.data import pixel_size_warnings


def _texture(size: int, seed: int = 0) -> Image.Image:
    """A seeded grey texture with structure at a few pixels' scale (blurred noise)."""
    noise = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3)).point(lambda v: max(0, min(255, (v - 128) * 6 + 128)))


def _two_copies(root: Path) -> tuple[Path, Path]:
    """The same specimen twice: a 512 px ImageJ TIFF at 10 nm per pixel (a 5.12 µm field), and its
    centre 256 px (2.56 µm) enlarged to 512 px, stated as 5 nm per pixel in a sidecar file."""
    base = _texture(512)
    wide = root / "wide.tif"
    base.save(wide, tiffinfo={270: "ImageJ=1.51a\nunit=nm\n", 282: 0.1, 283: 0.1, 296: 1})
    close = root / "close.png"
    base.crop((128, 128, 384, 384)).resize((512, 512), Image.BICUBIC).save(close)
    (root / "close.txt").write_text("PixelSize = 5 nm\n")
    return wide, close


def test_two_copies_at_different_stated_pixel_sizes_reach_the_model_at_one_scale(tmp_path: Path) -> None:
    wide, close = _two_copies(tmp_path)
    a, b = read_micrograph(wide), read_micrograph(close)
    assert (a.metadata.pixel_size_m, b.metadata.pixel_size_m) == (1e-08, 5e-09)
    at_scale = Preprocessing(img_size=112, resize=128, pixel_size_nm=20.0)
    view_a, view_b = prepare_grey(a.grey, at_scale, a.metadata)[1], prepare_grey(b.grey, at_scale, b.metadata)[1]
    assert view_a.shape == view_b.shape == (112, 112)
    # both show the centre 2.24 µm of the specimen at 20 nm per pixel: the same picture
    assert float(np.abs(view_a - view_b).mean()) < 0.03
    # without a common scale the wide copy shows twice the field: another picture
    plain = Preprocessing(img_size=112, resize=128)
    far_a, far_b = prepare_grey(a.grey, plain, a.metadata)[1], prepare_grey(b.grey, plain, b.metadata)[1]
    assert float(np.abs(far_a - far_b).mean()) > 0.15
    # training's evaluation side (the dataset) prepares them exactly as prediction does
    samples = [Sample(wide, "x"), Sample(close, "x")]
    dataset = MicrographDataset(samples, ["x"], build_eval_transform(112, "fixed", 0.0, 1.0), resize=128,
                                pixel_size_nm=20.0)
    for index, micrograph in enumerate((a, b)):
        assert torch.allclose(dataset[index][0][0], torch.from_numpy(prepare_grey(micrograph.grey, at_scale, micrograph.metadata)[1]))


def test_resampling_keeps_the_window_and_memory_bounded() -> None:
    grey = np.linspace(0, 1, 100 * 300, dtype=np.float32).reshape(100, 300)
    image = resize_to_pixel_size(grey, 10e-9, None, 5.0, 128)  # 200 x 600 px at 5 nm: the 128 x 512 centre
    assert image.dtype == torch.uint8 and tuple(image.shape) == (1, 128, 512)
    assert resize_to_pixel_size(grey, 10e-9, None, 20.0, 128) is None  # 50 px at 20 nm cannot fill 128
    huge = resize_to_pixel_size(grey, 1e-3, None, 0.1, 64)  # x10^7: only the centre source pixel is resampled
    assert tuple(huge.shape) == (1, 64, 256)
    assert tuple(resize_to_pixel_size(grey, 10e-9, 60e-9, 5.0, 128).shape) == (1, 512, 128)  # tall pixels: 1200 x 600
    assert torch.equal(resize_for_model(grey, 64, None, 10e-9), resize_for_model(grey, 64))  # no target: as before
    assert tuple(resize_for_model(grey, 128, 20.0, 10e-9).shape) == (1, 128, 384)  # too small: short side resized
    with pytest.raises(ValueError, match=r"^pixel sizes must be positive, got target 0.0 nm and pixel 1e-08 m$"):
        resize_to_pixel_size(grey, 10e-9, None, 0.0, 128)


def test_warnings_count_the_images_without_a_pixel_size_and_the_small_ones() -> None:
    scales = [(1e-8, 80), (1e-8, 80), (None, 80), (1e-9, 80)]
    assert pixel_size_warnings(scales, 5.0, 72) == [
        "--pixel-size 5: 1 of 4 images state no pixel size; they are used as they are (short side resized to 72 px)",
        "--pixel-size 5: 1 of 4 images cover fewer than 72 px at 5 nm per pixel; they are enlarged to 72 px "
        "(finer than the common scale)",
    ]
    assert pixel_size_warnings(scales, None, 72) == [] and pixel_size_warnings([(1e-8, 80)], 5.0, 72) == []
    with pytest.raises(HnfError, match=r"^pixel_size_nm \(--pixel-size\) must be a positive number of nanometres, got 0.0$"):
        TrainConfig(data="d", pixel_size_nm=0.0)


def test_pixel_size_through_train_checkpoint_and_predict(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hnf.cli import app
    from hnf.data.synth import write_synthetic_dataset
    from hnf.predict import Predictor

    torch.set_num_threads(2)
    data = write_synthetic_dataset(tmp_path / "data", per_class=6, size=80, seed=3)
    images = sorted(p for p in data.rglob("*.png"))
    for path in images[1:]:  # every image but one states 10 nm per pixel
        path.with_suffix(".txt").write_text("PixelSize = 10 nm\nMagnification = 20000\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(data), "--model", "resnet18", "--epochs", "1", "--batch-size", "8", "--img-size", "64",
        "--val-fraction", "0.2", "--precision", "fp32", "--pixel-size", "5", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert (f"--pixel-size 5: 1 of {len(images)} images state no pixel size; they are used as they are (short side "
            f"resized to 73 px)") in " ".join(result.output.split())
    meta = json.loads((run / "checkpoint" / "checkpoint.json").read_text())
    assert meta["preprocessing"]["pixel_size_nm"] == 5.0
    assert json.loads((run / "config.json").read_text())["pixel_size_nm"] == 5.0

    out = tmp_path / "rows.json"
    result = CliRunner().invoke(app, ["predict", str(images[0]), str(images[1]), "--checkpoint", str(run),
                                      "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "│ 10 nm      │ 800 nm x 800 nm │" in result.output  # the table's pixel size and field of view
    rows = json.loads(out.read_text())
    assert rows[0]["pixel_size_m"] is None and rows[0]["field_of_view_m"] is None
    assert rows[1]["pixel_size_m"] == 1e-08 and rows[1]["field_of_view_m"] == pytest.approx([8e-07, 8e-07])
    # predict resampled the stated image to 5 nm per pixel: its input is the training pipeline's
    predictor = Predictor.from_checkpoint(run)
    micrograph = read_micrograph(images[1])
    expected = prepare_grey(micrograph.grey, predictor.pre, micrograph.metadata)[0]
    assert torch.equal(predictor.prepare(images[1]).tensor, expected)
    assert not torch.equal(expected, prepare_grey(micrograph.grey, Preprocessing(**{**predictor.pre.__dict__,
                                                                                      "pixel_size_nm": None}))[0])
