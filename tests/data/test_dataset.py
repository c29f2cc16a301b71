"""Indexing folders and manifests, with every kind of bad input reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hnf.data.dataset import Problem, index_dataset
from hnf.data.torch_dataset import MicrographDataset, resize_short_side
from hnf.data.transforms import build_eval_transform, build_train_transform
from hnf.errors import DatasetError


def _write(path: Path, value: int = 100, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def test_folder_layout_with_problems_reported(tmp_path: Path) -> None:
    _write(tmp_path / "A" / "a1.png")
    _write(tmp_path / "A" / "nested" / "a2.jpg")
    (tmp_path / "A" / "readme.txt").write_text("notes")
    _write(tmp_path / "B" / "b1.tif")
    (tmp_path / "Empty").mkdir()
    (tmp_path / "labels.csv").write_text("ignored,root,file\n")
    index = index_dataset(tmp_path)
    assert index.classes == ["A", "B"]
    assert index.class_counts() == {"A": 2, "B": 1}
    assert [index.relative(s.path) for s in index.samples] == ["A/a1.png", "A/nested/a2.jpg", "B/b1.tif"]
    assert index.problems == [
        Problem("A/readme.txt", "not an image file (expected one of .jpg, .jpeg, .png, .bmp, .tif, .tiff)"),
        Problem("Empty/", "class folder has no images; class skipped"),
    ]
    index.require_classes(2)


def test_class_folders_that_are_links_keep_paths_under_the_dataset_root(tmp_path: Path) -> None:
    _write(tmp_path / "elsewhere" / "A" / "a1.png")
    _write(tmp_path / "elsewhere" / "B" / "b1.png")
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in ("A", "B"):
        (subset / name).symlink_to(tmp_path / "elsewhere" / name, target_is_directory=True)
    index = index_dataset(subset)
    assert [index.relative(s.path) for s in index.samples] == ["A/a1.png", "B/b1.png"]
    assert all(s.path.is_file() and s.path.is_absolute() for s in index.samples)


def test_one_class_folder_is_refused_for_training(tmp_path: Path) -> None:
    _write(tmp_path / "Only" / "x.png")
    index = index_dataset(tmp_path)
    with pytest.raises(DatasetError) as caught:
        index.require_classes(2)
    assert str(caught.value) == f"{tmp_path.resolve()}: need images of at least 2 classes to train or evaluate, found 1 (Only)"


def test_missing_path_and_folder_without_classes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: no such file or folder$"):
        index_dataset(tmp_path / "nowhere")
    _write(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="no class folders found"):
        index_dataset(tmp_path)


def test_manifest_with_groups_and_a_row_pointing_nowhere(tmp_path: Path) -> None:
    _write(tmp_path / "img" / "1.png")
    _write(tmp_path / "img" / "2.png")
    manifest = tmp_path / "set.csv"
    manifest.write_text("path,label,group\nimg/1.png,cat,g1\nimg/2.png,dog,\nimg/3.png,dog,g2\n,dog,\n")
    index = index_dataset(manifest)
    assert [(index.relative(s.path), s.label, s.group) for s in index.samples] == [
        ("img/1.png", "cat", "g1"),
        ("img/2.png", "dog", None),
    ]
    assert index.problems == [
        Problem("set.csv line 4", "file 'img/3.png' not found; row skipped"),
        Problem("set.csv line 5", "empty path or label; row skipped"),
    ]


def test_manifest_missing_column(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,class\na.png,x\n")
    with pytest.raises(DatasetError) as caught:
        index_dataset(manifest)
    assert str(caught.value) == (
        f"{manifest}: missing column(s) path, label (expected a header with path,label and optionally group; found file, class)"
    )


def test_torch_dataset_resizes_once_caches_and_transforms(tmp_path: Path) -> None:
    _write(tmp_path / "A" / "a.png", 30, (300, 400))
    _write(tmp_path / "B" / "b.png", 220, (260, 260))
    index = index_dataset(tmp_path)
    dataset = MicrographDataset(index.samples, index.classes, build_eval_transform(224, "fixed"), cache=True)
    image, label = dataset[0]
    assert image.shape == (1, 224, 224) and image.dtype == torch.float32 and label == 0
    assert torch.allclose(image, torch.full_like(image, (30 / 255 - 0.5) / 0.25), atol=1e-5)
    assert dataset.load(0) is dataset.load(0)  # second call served from the cache
    assert dataset.load(0).shape == (1, 256, 341)
    assert dataset.bands == {0: None}
    torch.manual_seed(0)
    train = MicrographDataset(index.samples, index.classes, build_train_transform(224))
    assert train[1][0].shape == (1, 224, 224) and train[1][1] == 1


def test_preload_caches_what_lazy_loading_would(tmp_path: Path) -> None:
    from hnf.data.synth import write_synthetic_dataset

    index = index_dataset(write_synthetic_dataset(tmp_path / "data", per_class=2, size=96, seed=1, band_prob=0.5))
    lazy = MicrographDataset(index.samples, index.classes, resize=80, cache=True)
    eager = MicrographDataset(index.samples, index.classes, resize=80, cache=True)
    eager.preload(threads=2)
    assert len(eager._cached) == len(index.samples)
    for i in range(len(index.samples)):
        assert torch.equal(eager._cached[i], lazy.load(i))
    assert eager.bands == lazy.bands and any(band is not None for band in eager.bands.values())
    with pytest.raises(ValueError, match="preload needs cache=True"):
        MicrographDataset(index.samples, index.classes).preload()


def test_resize_short_side_and_unknown_labels() -> None:
    assert resize_short_side(np.zeros((100, 50), np.float32), 256).shape == (1, 512, 256)
    from hnf.data.dataset import Sample

    with pytest.raises(ValueError, match="labels not among the classes"):
        MicrographDataset([Sample(Path("x.png"), "zebra")], ["A"])


def test_per_image_normalisation_removes_brightness_and_contrast() -> None:
    from hnf.data.transforms import Normalise, normalise

    torch.manual_seed(0)
    image = torch.rand(1, 32, 32) * 0.4 + 0.1
    out = normalise(image)
    assert abs(out.mean().item()) < 1e-6 and out.std().item() == pytest.approx(1.0, abs=1e-5)
    darker_flatter = image * 0.5 + 0.2  # another brightness and contrast setting, same scene
    assert torch.allclose(normalise(darker_flatter), out, atol=1e-4)
    assert torch.allclose(normalise(image, "fixed"), (image - 0.5) / 0.25)
    with pytest.raises(ValueError, match=r"normalisation must be one of \('per_image', 'fixed'\), got 'zscore'"):
        Normalise("zscore")


def test_brightness_contrast_jitter_only_where_normalisation_keeps_it() -> None:
    from torchvision.transforms import v2

    from hnf.data.transforms import normalise

    torch.manual_seed(0)
    image = torch.rand(1, 32, 32) * 0.4 + 0.1  # no pixel reaches white under +-20% jitter
    jitter = v2.ColorJitter(brightness=0.2, contrast=0.2)
    assert torch.allclose(normalise(jitter(image)), normalise(image), atol=1e-4)  # undone per image
    kinds = {n: [type(t).__name__ for t in build_train_transform(64, n).transforms] for n in ("per_image", "fixed")}
    assert "ColorJitter" in kinds["fixed"] and "ColorJitter" not in kinds["per_image"]


def test_an_elongated_image_is_centre_cropped_to_the_aspect_limit_before_resizing() -> None:
    from hnf.data.torch_dataset import MAX_ASPECT, centre_crop_aspect

    strip = np.zeros((10, 1000), np.float32)
    strip[:, 480:520] = 1.0  # the centre survives the crop
    assert centre_crop_aspect(strip).shape == (10, int(MAX_ASPECT * 10))
    resized = resize_short_side(strip, 256)
    assert resized.shape == (1, 256, int(MAX_ASPECT * 256))  # not (1, 256, 25600)
    assert resized[0, :, resized.shape[2] // 2].min() == 255
    tall = np.zeros((900, 300), np.float32)
    assert centre_crop_aspect(tall).shape == (900, 300)  # 3:1 is kept whole
