"""Fixtures of the training tests: synthetic class folders and a briefly trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hnf.data.synth.micrograph import SYNTH_CLASSES
from hnf.data.synth.writer import encode_png, synth_image
from hnf.train.loop import TrainConfig, train


def write_classes(root: Path, classes: list[int], per_class: int, seed: int) -> Path:
    for c in classes:
        folder = root / SYNTH_CLASSES[c]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{c}_{i}.png").write_bytes(encode_png(synth_image(seed, c, i, 80)[0]))
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 trained for three epochs on three synthetic classes (64 px; about 30 s on 2 CPUs)."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("trust")
    data = write_classes(root / "data", [0, 1, 2], per_class=14, seed=7)
    config = TrainConfig(data=str(data), out=str(root / "run"), model="resnet18", epochs=3, batch_size=8,
                         img_size=64, resize=72, lr=2e-3, val_fraction=0.25, precision="fp32")
    train(config)
    return root / "run"
