"""Seeded, stratified, group-aware splits, saved as JSON so that every run reuses them.

Stratified: each side keeps the class proportions as far as the groups allow. Group-aware: all
images of one group (a manifest group, or a duplicate group) land on the same side, so a test
image never has a copy in training. Built on scikit-learn's ``StratifiedGroupKFold``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from hnf.atomic import atomic_write_json, read_json
from hnf.errors import DatasetError

SPLIT_FORMAT = "hnf-split/1"


@dataclass(frozen=True)
class Fold:
    """Relative image paths of one fold's training and test sides."""

    train: list[str]
    test: list[str]


@dataclass(frozen=True)
class Split:
    """A list of folds (one for a train/test split, k for k-fold) and how they were made."""

    kind: str
    seed: int
    classes: list[str]
    folds: list[Fold]

    def to_json(self) -> dict:
        return {
            "format": SPLIT_FORMAT,
            "kind": self.kind,
            "seed": self.seed,
            "classes": self.classes,
            "folds": [{"train": fold.train, "test": fold.test} for fold in self.folds],
        }


def _check_inputs(paths: Sequence[str], labels: Sequence[str], groups: Sequence[str | int], folds: int) -> None:
    if not len(paths) == len(labels) == len(groups):
        raise ValueError("paths, labels and groups must have the same length")
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    distinct_groups = len(set(groups))
    if distinct_groups < folds:
        raise DatasetError(
            f"cannot make {folds} folds from {distinct_groups} independent image group(s); "
            "add images or use fewer folds"
        )


def stratified_group_kfold(
    paths: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str | int],
    folds: int,
    seed: int,
) -> Split:
    """k folds; every image is in exactly one test side; groups never straddle a fold."""
    _check_inputs(paths, labels, groups, folds)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    dummy = np.zeros(len(paths))
    path_array = np.asarray(paths, dtype=object)
    with warnings.catch_warnings():
        # small classes get fewer test images than the others; the split is still valid
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            result = [
                Fold(sorted(path_array[train].tolist()), sorted(path_array[test].tolist()))
                for train, test in splitter.split(dummy, list(labels), list(groups))
            ]
        except ValueError as err:
            raise DatasetError(f"cannot split {len(paths)} images into {folds} folds ({err})") from None
    return Split("kfold", seed, sorted(set(labels)), result)


def stratified_group_train_test(
    paths: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str | int],
    test_fraction: float,
    seed: int,
) -> Split:
    """One train/test split with about ``test_fraction`` of the images on the test side.

    The test side is the first fold of a ``round(1 / test_fraction)``-fold split, so it is
    stratified and group-aware in the same way. When even the largest class has fewer images
    than that many folds, the fold count drops to its size (a larger test share, never an
    empty class on the training side by design).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    largest_class = max(Counter(labels).values(), default=0)
    folds = max(2, min(round(1.0 / test_fraction), largest_class))
    first = stratified_group_kfold(paths, labels, groups, folds, seed).folds[0]
    return Split("train_test", seed, sorted(set(labels)), [first])


def save_split(split: Split, path: str | Path) -> Path:
    """Write a split as JSON (atomically)."""
    return atomic_write_json(path, split.to_json())


def load_split(path: str | Path) -> Split:
    """Read a split written by :func:`save_split`; a malformed file gives a clear error."""
    data = read_json(path, "split file", DatasetError)
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise DatasetError(f"{path}: not an hnf split file (expected \"format\": \"{SPLIT_FORMAT}\")")
    try:
        folds = [Fold(list(fold["train"]), list(fold["test"])) for fold in data["folds"]]
        return Split(str(data["kind"]), int(data["seed"]), list(data["classes"]), folds)
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: malformed split file (field {err})") from None
