"""The data side of a training run: index, split (saved and reused), validation carve-out, loaders.

The test side of the split is held out: training never sees it and nothing is chosen on it. The
validation side is carved from the training side (stratified, group-aware), for the per-epoch
numbers. Groups are manifest groups, else exact and near duplicate groups (found by decoding every
image once, in parallel), so copies never straddle a split.
"""

from __future__ import annotations

import statistics
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from hnf.data.dataset import DatasetIndex, Problem, Sample, index_dataset
from hnf.data.inspect import inspect_dataset
from hnf.data.splits import Split, load_split, save_split, stratified_group_train_test
from hnf.data.torch_dataset import MicrographDataset
from hnf.data.transforms import MEAN, STD, build_eval_transform, build_train_transform, resize_for
from hnf.errors import DatasetError
from hnf.models.config import DESIGN_SCALES, ConfigError, scales_for_image


@dataclass
class RunData:
    """Samples of each side of a run and the class names (sorted)."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    split: Split
    skipped: list[Problem]
    median_short_side: int  # of every readable image, above its information band
    # per readable image: (stated pixel size in metres or None, short side above the band in px)
    scales: list[tuple[float | None, int]] = field(default_factory=list)


@dataclass
class ReadableDataset:
    """The readable images of a dataset by relative path, their split groups, what was skipped,
    and the median short side of the images (above their information band)."""

    index: DatasetIndex
    by_path: dict[str, Sample]
    groups: dict[str, str]
    skipped: list[Problem]
    median_short_side: int
    scales: list[tuple[float | None, int]] = field(default_factory=list)


def readable_dataset(data: Path) -> ReadableDataset:
    """Index and decode ``data`` once: keep readable images, group them (manifest group, else
    duplicate group, else alone), and require at least two classes."""
    index = index_dataset(data)
    report = inspect_dataset(data)
    groups = {record.path: record.group or record.path for record in report.images}
    by_path = {index.relative(s.path): s for s in index.samples if index.relative(s.path) in groups}
    readable = DatasetIndex(index.root, list(by_path.values()), report.classes, index.problems)
    readable.require_classes(2)
    median_short_side = round(statistics.median(record.short_side for record in report.images))
    scales = [(record.pixel_size_m, record.short_side) for record in report.images]
    return ReadableDataset(readable, by_path, groups, report.unreadable, median_short_side, scales)


def class_count_warnings(run: RunData) -> list[str]:
    """Warnings about classes too small to learn or to score: a class with a single image (it
    sits on one side of the split only), and classes with no test or no training image."""
    warnings = []
    for name in run.classes:
        counts = {side: sum(s.label == name for s in samples)
                  for side, samples in (("training", run.train), ("validation", run.val), ("test", run.test))}
        if sum(counts.values()) == 1:
            warnings.append(f"class {name!r} has a single image: it cannot be both learned and tested; "
                            f"add images or leave the class out")
        elif counts["training"] == 0:
            warnings.append(f"class {name!r} has no training image in this split: the model cannot learn it")
        elif counts["test"] == 0:
            warnings.append(f"class {name!r} has no test image in this split: it is reported as such and left "
                            f"out of macro-F1")
    return warnings


def _keeps_every_design_scale(img_size: int) -> bool:
    """Whether every patch size of DESIGN.md 2.1 scales to whole pixels at ``img_size``
    (:func:`hnf.models.scales_for_image`; true for the multiples of 56)."""
    with suppress(ConfigError):
        return len(scales_for_image(img_size)) == len(DESIGN_SCALES)
    return False


def upsampling_warning(median_short_side: int, img_size: int, resize: int, crop_multiple: int | None = None) -> str | None:
    """A warning when resizing the images to a short side of ``resize`` before the ``img_size``
    crop enlarges most of them, else None.

    Enlarging adds no detail and costs accuracy (neu-surface's 200 px images, BENCHMARKS.md,
    "neu-surface"). The suggestion is the largest crop whose ``resize_for`` needs no enlarging and
    that the model can take: a multiple of ``crop_multiple`` (a trunk's coarsest stride) where
    given, else one at which every design patch size scales to whole pixels (a multiple of 56).
    """
    if median_short_side >= resize:
        return None

    def model_takes(size: int) -> bool:
        return size % crop_multiple == 0 if crop_multiple else _keeps_every_design_scale(size)

    fits = [s for s in range(1, img_size) if resize_for(s) <= median_short_side and model_takes(s)]
    advice = f"; --img-size {fits[-1]} keeps them at their own resolution or below" if fits else ""
    return (
        f"--img-size {img_size} resizes the images to a short side of {resize} px, but half of them are "
        f"at most {median_short_side} px: they are enlarged x{resize / median_short_side:.2f}, which costs "
        f"accuracy (on 200 px neu-surface images resnet18 lost 11 to 16 points at 192-224 px against 112 px){advice}"
    )


def pixel_size_warnings(scales: list[tuple[float | None, int]], pixel_size_nm: float | None, resize: int) -> list[str]:
    """With ``--pixel-size``: warnings, with counts, about images that state no pixel size (used
    as they are) and images that cover fewer than ``resize`` pixels at ``pixel_size_nm`` on their
    short side (enlarged to ``resize``, finer than the common scale). ``scales``: per image, the
    stated pixel size (metres or None) and the short side above the band (pixels)."""
    if pixel_size_nm is None or not scales:
        return []
    total = len(scales)
    missing = sum(size is None for size, _ in scales)
    small = sum(size is not None and size * 1e9 * short / pixel_size_nm < resize for size, short in scales)
    warnings = []
    if missing:
        warnings.append(f"--pixel-size {pixel_size_nm:g}: {missing} of {total} images state no pixel size; they are "
                        f"used as they are (short side resized to {resize} px)")
    if small:
        warnings.append(f"--pixel-size {pixel_size_nm:g}: {small} of {total} images cover fewer than {resize} px at "
                        f"{pixel_size_nm:g} nm per pixel; they are enlarged to {resize} px (finer than the common scale)")
    return warnings


def subsample_per_class(samples: list[Sample], per_class: int, seed: int) -> list[Sample]:
    """At most ``per_class`` samples of each class, drawn without replacement by a generator seeded
    with ``seed`` from the samples sorted by path (so the draw depends on the seed and the side, not
    on the model: runs of two models with one seed see the same images); order kept."""
    if per_class < 1:
        raise DatasetError(f"train_per_class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    kept: set[str] = set()
    for label in sorted({s.label for s in samples}):
        paths = sorted(str(s.path) for s in samples if s.label == label)
        chosen = rng.choice(len(paths), size=min(per_class, len(paths)), replace=False)
        kept.update(paths[i] for i in chosen)
    return [s for s in samples if str(s.path) in kept]


def _split_samples(by_path: dict[str, Sample], fold_train: list[str], fold_test: list[str], root: Path) -> tuple[list[Sample], list[Sample]]:
    unknown = [p for p in fold_train + fold_test if p not in by_path]
    if unknown:
        raise DatasetError(
            f"split refers to {len(unknown)} image(s) not readable in {root} (first: {unknown[0]}); "
            "was it made for another dataset?"
        )
    return [by_path[p] for p in fold_train], [by_path[p] for p in fold_test]


def prepare_run_data(
    data: Path,
    split_path: Path | None,
    run_dir: Path | None,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    train_per_class: int | None = None,
) -> RunData:
    """Index and decode ``data`` once (unreadable files are skipped and listed in ``skipped``),
    load or make the train/test split (saved as ``run_dir/split.json`` unless ``run_dir`` is
    None), carve validation from the training side; with ``train_per_class`` keep at most that
    many training images per class (:func:`subsample_per_class`; validation and test unchanged)."""
    readable = readable_dataset(data)
    index, by_path, groups = readable.index, readable.by_path, readable.groups
    if split_path is not None:
        split = load_split(split_path)
        if split.classes != index.classes:
            raise DatasetError(
                f"{split_path}: split classes {split.classes} differ from the dataset's {index.classes}"
            )
    else:
        paths = list(by_path)
        labels = [by_path[p].label for p in paths]
        split = stratified_group_train_test(paths, labels, [groups[p] for p in paths], test_fraction, seed)
    if run_dir is not None:
        save_split(split, run_dir / "split.json")
    train, test = _split_samples(by_path, split.folds[0].train, split.folds[0].test, index.root)
    train_paths = [index.relative(s.path) for s in train]
    carve = stratified_group_train_test(
        train_paths, [s.label for s in train], [groups[p] for p in train_paths], val_fraction, seed + 1
    )
    train, val = _split_samples(by_path, carve.folds[0].train, carve.folds[0].test, index.root)
    if train_per_class is not None:
        train = subsample_per_class(train, train_per_class, seed)
    return RunData(index.classes, train, val, test, split, readable.skipped, readable.median_short_side, readable.scales)


class EpochSampler(Sampler[tuple[int, int]]):
    """A seeded permutation per epoch (seed, epoch), so an interrupted epoch can resume exactly:
    ``skip`` drops the first items already consumed. Each item is ``(index, augmentation seed)``
    with the seed a function of (seed, epoch, index) (see ``MicrographDataset.__getitem__``).
    With ``num_replicas > 1`` each rank takes every ``num_replicas``-th item of the padded
    permutation (as DistributedSampler does), so rank r's j-th batch of size B/num_replicas holds
    the items that one process would put into its j-th batch of size B at positions r, r+R, ..."""

    def __init__(self, size: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.size, self.seed, self.num_replicas, self.rank = size, seed, num_replicas, rank
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _items(self) -> list[tuple[int, int]]:
        base = self.seed * 100_003 + self.epoch
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(base)).tolist()
        total = -(-self.size // self.num_replicas) * self.num_replicas
        order += order[: total - len(order)]
        return [(index, base * 1_000_003 + index) for index in order[self.rank :: self.num_replicas]]

    def __iter__(self):
        return iter(self._items()[self.skip :])

    def __len__(self) -> int:
        return -(-self.size // self.num_replicas) - self.skip


def build_loaders(
    run: RunData,
    img_size: int,
    resize: int,
    batch_size: int,
    seed: int,
    crop_band: bool,
    workers: int,
    pin_memory: bool,
    num_replicas: int = 1,
    rank: int = 0,
    normalisation: str = "per_image",
    mean: float = MEAN,
    std: float = STD,
    pixel_size_nm: float | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader, EpochSampler]:
    """Train (augmented, seeded sampler), validation and test (evaluation transform) loaders.

    With ``workers == 0`` the images are cached in memory, and the training and validation ones
    are decoded now, in parallel (:meth:`MicrographDataset.preload`), not during the first epoch.
    ``mean`` and ``std`` are those of ``"fixed"`` normalisation; ``pixel_size_nm`` the common scale
    (:class:`MicrographDataset`).
    """
    def dataset(samples: list[Sample], train: bool) -> MicrographDataset:
        transform = (build_train_transform(img_size, normalisation, mean, std) if train
                     else build_eval_transform(img_size, normalisation, mean, std))
        return MicrographDataset(samples, run.classes, transform, crop_band=crop_band, resize=resize, cache=workers == 0,
                                 pixel_size_nm=pixel_size_nm)

    sampler = EpochSampler(len(run.train), seed, num_replicas, rank)
    common = {"num_workers": workers, "pin_memory": pin_memory, "persistent_workers": workers > 0}
    train = DataLoader(dataset(run.train, True), batch_size=batch_size, sampler=sampler, drop_last=len(run.train) > batch_size, **common)
    val = DataLoader(dataset(run.val, False), batch_size=batch_size, **common)
    if workers == 0:
        train.dataset.preload()
        val.dataset.preload()
    test = DataLoader(dataset(run.test, False), batch_size=batch_size, **common)
    return train, val, test, sampler
