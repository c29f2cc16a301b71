"""Robustness: the reader and predict never crash or hang on what a lab throws at them.

Truncated JPEGs, random bytes named .tif, zero-byte files, headers declaring huge images (PNG, BMP),
16-bit and float TIFFs, CMYK and palette images: each file either decodes to a grey image in [0, 1]
or fails with an :class:`ImageReadError` that names the file and says why; predict gives one row per
file either way.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

from hnf.data.reading import read_micrograph
from hnf.errors import ImageReadError
from hnf.predict import Predictor

import predict_support as support  # tests/predict, put on sys.path by conftest.py

SLOW_FILE_S = 20.0  # far above the milliseconds a file takes: only a hang would cross it
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _with_each_kind(test):
    for item in support.one_of_each():
        test = example(item=item)(test)
    return test


@FUZZ
@given(item=support.lab_files())
@_with_each_kind
def test_reader_decodes_or_explains(item: tuple[str, bytes, bool], tmp_path: Path) -> None:
    name, data, readable = item
    path = tmp_path / name
    path.write_bytes(data)
    start = time.monotonic()
    try:
        micrograph = read_micrograph(path)
    except ImageReadError as err:
        assert not readable, f"{name} should decode: {err}"
        assert str(err).startswith(f"{path}: ") and len(err.reason) > 5
    else:
        assert readable, f"{name} ({len(data)} bytes) decoded but is broken"
        grey = micrograph.grey
        assert grey.dtype == np.float32 and grey.ndim == 2 and grey.size > 0
        assert np.isfinite(grey).all() and 0 <= grey.min() and grey.max() <= 1
        assert grey.max() - grey.min() > 0.1  # 16-bit/float data scaled, not flattened
    assert time.monotonic() - start < SLOW_FILE_S


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint)


@FUZZ
@given(items=support.st.lists(support.lab_files(), min_size=1, max_size=4))
def test_predict_gives_one_row_per_file(items, predictor: Predictor, tmp_path: Path) -> None:
    paths = []
    for index, (name, data, _) in enumerate(items):
        path = tmp_path / f"{index}-{name}"
        path.write_bytes(data)
        paths.append(path)
    start = time.monotonic()
    rows = list(predictor.predict_files(paths, top_k=3, batch_size=3))
    assert time.monotonic() - start < SLOW_FILE_S * len(paths)
    assert [r.path for r in rows] == [str(p) for p in paths]
    for row, (name, _, readable) in zip(rows, items):
        if readable:
            assert row.error is None, row.error
            assert len(row.top_k) == 3 and math.isclose(float(row.probs.sum()), 1, abs_tol=1e-4)
        else:
            assert row.error is not None and row.error.startswith(f"{row.path}: ") and row.top_k == []
