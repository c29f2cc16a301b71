"""Fixtures for predict/explain/export tests: a small seeded checkpoint and synthetic micrographs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from hnf.data.synth import write_synthetic_dataset


def _support() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_hnf_support_loader", Path(__file__).with_name("support.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load()


support = _support()


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
