"""Shared fixtures: where the real data lies, and helpers that write real image files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (CI provides it); tests skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def textured(rng: np.random.Generator, height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth random texture in [0.1, 0.9] with shot noise: a stand-in micrograph."""
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(rng.random((height, width)), 3)
    base = (base - base.min()) / (np.ptp(base) + 1e-9)
    return np.clip(0.1 + 0.8 * base + rng.normal(0, 0.03, base.shape), 0, 1).astype(np.float32)


def write_noise_pngs(folder: Path, count: int, height: int, width: int, seed: int = 0) -> list[Path]:
    """``count`` 8-bit PNGs of uniform noise, ``noise0.png``, ... in ``folder`` (seeded)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"noise{i}.png"
        Image.fromarray((rng.random((height, width)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths
