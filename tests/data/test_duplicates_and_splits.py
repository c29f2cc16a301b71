"""Duplicate groups and group-aware stratified splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hnf.data.duplicates import exact_groups, near_groups, perceptual_hash
from hnf.data.splits import load_split, save_split, stratified_group_kfold, stratified_group_train_test
from hnf.errors import DatasetError

from ..conftest import textured


def test_near_duplicates_group_shifted_and_recontrasted_copies(rng) -> None:
    originals = [textured(rng, 128, 128) for _ in range(6)]
    copies = [np.clip(o[1:, 1:] * 0.9 + 0.05 + rng.normal(0, 0.01, o[1:, 1:].shape), 0, 1) for o in originals[:2]]
    hashes = [perceptual_hash(image) for image in originals + copies]
    assert near_groups(hashes) == [[0, 6], [1, 7]]


def test_exact_groups() -> None:
    assert exact_groups(["a", "b", "a", "c", "b", "a"]) == [[0, 2, 5], [1, 4]]
    assert exact_groups(["a", "b"]) == []


def _toy(n_per_class: int = 30, classes: int = 3):
    paths = [f"c{c}/{i}.png" for c in range(classes) for i in range(n_per_class)]
    labels = [f"c{c}" for c in range(classes) for _ in range(n_per_class)]
    groups = [p if i % 5 else f"group-{i // 10}" for i, p in enumerate(paths)]
    return paths, labels, groups


def test_kfold_covers_each_image_once_keeps_groups_and_strata() -> None:
    paths, labels, groups = _toy()
    split = stratified_group_kfold(paths, labels, groups, folds=5, seed=0)
    tested = [p for fold in split.folds for p in fold.test]
    assert sorted(tested) == sorted(paths)
    group_of = dict(zip(paths, groups))
    label_of = dict(zip(paths, labels))
    for fold in split.folds:
        assert not {group_of[p] for p in fold.train} & {group_of[p] for p in fold.test}
        assert set(fold.train) | set(fold.test) == set(paths)
        counts = Counter(label_of[p] for p in fold.test)
        assert all(4 <= n <= 8 for n in counts.values()), counts
    assert stratified_group_kfold(paths, labels, groups, 5, seed=0) == split
    assert stratified_group_kfold(paths, labels, groups, 5, seed=1) != split


def test_train_test_fraction_and_json_round_trip(tmp_path: Path) -> None:
    paths, labels, groups = _toy(50)
    split = stratified_group_train_test(paths, labels, groups, test_fraction=0.2, seed=0)
    assert split.kind == "train_test" and len(split.folds) == 1
    assert 0.15 <= len(split.folds[0].test) / len(paths) <= 0.25
    saved = save_split(split, tmp_path / "split.json")
    assert load_split(saved) == split


def test_split_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot make 5 folds from 2 independent image group\(s\)"):
        stratified_group_kfold(["a", "b", "c"], ["x", "y", "x"], [1, 1, 2], folds=5, seed=0)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"bad.json: not an hnf split file"):
        load_split(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DatasetError, match=r"broken.json: not valid JSON"):
        load_split(tmp_path / "broken.json")
    with pytest.raises(DatasetError, match=r"gone.json: split file not found"):
        load_split(tmp_path / "gone.json")
