"""Fixtures for predict/explain/export tests: a small seeded checkpoint and synthetic micrographs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from hnf.data.synth import write_synthetic_dataset


sys.path.insert(0, str(Path(__file__).parent))
import predict_support as support  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def make_checkpoint():
    """``make_checkpoint(dir, name="hnf_small", overrides=None, preprocessing=None)`` (see support.py)."""
    return support.make_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.make_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic micrograph per class (256 px), half of them with an information band."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", per_class=1, size=256,
                                   seed=0, band_prob=0.5)
