"""ONNX export: onnxruntime's logits equal PyTorch's within 1e-3 on synthetic micrographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from hnf.cli import app
from hnf.cli.predict_commands import synthetic_batch
from hnf.export import adaptive_avg_pool2d_static, compare_with_torch, knn_graph_out_of_place, onnx_logits
from hnf.models.graph import knn_graph
from hnf.predict import Predictor
from hnf.train.checkpoint import Preprocessing

runner = CliRunner()


def test_traceable_replacements_compute_the_same_values() -> None:
    torch.manual_seed(0)
    for size_in, size_out in [((14, 14), (8, 8)), ((8, 8), (7, 7)), ((9, 5), (4, 3))]:
        x = torch.randn(2, 3, *size_in)
        torch.testing.assert_close(adaptive_avg_pool2d_static(x, size_out), F.adaptive_avg_pool2d(x, size_out))
    for n, k in [(49, 9), (64, 9), (4, 9), (1, 9)]:
        x = torch.randn(3, n, 16)
        assert torch.equal(knn_graph_out_of_place(x, k), knn_graph(x, k))


@pytest.fixture(scope="module")
def hnf_small_checkpoint(tmp_path_factory: pytest.TempPathFactory, make_checkpoint) -> Path:
    """The real hnf_small configuration (untrained, seeded; head scaled to logits of a few units,
    like a trained model's)."""
    return make_checkpoint(tmp_path_factory.mktemp("onnx") / "checkpoint", overrides={}, sharpen=10.0)


def test_hnf_small_onnx_matches_pytorch(hnf_small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "onnx", "--checkpoint", str(hnf_small_checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max |logit diff|" in result.output
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    predictor = Predictor.from_checkpoint(hnf_small_checkpoint)
    assert json.loads(meta["hnf.classes"]) == predictor.classes
    assert json.loads(meta["hnf.preprocessing"])["img_size"] == 224 and meta["hnf.model"] == "hnf_small"
    # the synthetic test set: one image of each of the ten classes, batch sizes 1 and 10
    images = synthetic_batch(hnf_small_checkpoint, count=10, seed=3)
    diff = compare_with_torch(out, predictor.model, images)
    assert diff < 1e-3, diff
    single = onnx_logits(out, images[:1].numpy())
    with torch.no_grad():
        expected = predictor.model(images[:1]).numpy()
    assert np.abs(single - expected).max() < 1e-3
    print(f"hnf_small ONNX max |logit diff| over 10 synthetic micrographs: {diff:.2e}")


def test_timm_baseline_exports_too(tmp_path: Path, make_checkpoint) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", "resnet18", overrides={},
                           preprocessing=Preprocessing(img_size=64, resize=72), sharpen=1.0)
    out = tmp_path / "resnet.onnx"
    result = runner.invoke(app, ["export", "onnx", "--checkpoint", str(ckpt), "--out", str(out)])
    assert result.exit_code == 0, result.output


def test_export_of_a_broken_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "onnx", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    assert not (tmp_path / "m.onnx").exists()
