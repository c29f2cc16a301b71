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
from hnf.data.synth.writer import synth_image
from hnf.explain import explain_batch
from hnf.export import compare_with_torch, export_model, onnx_logits
from hnf.models.factory import build_classifier
from hnf.models.graph import knn_graph
from hnf.models.pooling import area_pool, area_pool_matrices
from hnf.predict import Predictor, prepare_grey
from hnf.train.checkpoint import CheckpointMeta, Preprocessing

runner = CliRunner()


def _knn_graph_in_place(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-NN graph written with in-place writes on views (the reference values)."""
    batch, n, _ = x.shape
    k = min(k, n - 1)
    adj = x.new_zeros(batch, n, n, dtype=torch.float32)
    if k <= 0:
        return adj
    unit = F.normalize(x.float(), dim=-1)
    sim = unit @ unit.transpose(1, 2)
    sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
    adj.scatter_(-1, sim.topk(k, dim=-1).indices, 1.0)
    return torch.maximum(adj, adj.transpose(1, 2))


class _Traced(torch.nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _onnx_of(fn, x: torch.Tensor, path: Path) -> np.ndarray:
    """``fn(x)`` exported to ONNX as the model export traces it, run by onnxruntime."""
    with torch.no_grad():
        torch.onnx.export(_Traced(fn), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"])
    return onnx_logits(path, x.numpy())


def test_traceable_model_functions_compute_the_same_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    for size_in, size_out in [((14, 14), (8, 8)), ((8, 8), (7, 7)), ((9, 5), (4, 3))]:
        x = torch.randn(2, 3, *size_in)
        torch.testing.assert_close(area_pool_matrices(x, size_out), F.adaptive_avg_pool2d(x, size_out))
        assert torch.equal(area_pool(x, size_out), F.adaptive_avg_pool2d(x, size_out))  # eager: the kernel
        exported = _onnx_of(lambda t, size=size_out: area_pool(t, size), x, tmp_path / "pool.onnx")
        np.testing.assert_allclose(exported, F.adaptive_avg_pool2d(x, size_out).numpy(), atol=1e-6, rtol=1e-5)
    for n, k in [(49, 9), (64, 9), (4, 9), (1, 9)]:
        x = torch.randn(3, n, 16)
        assert torch.equal(knn_graph(x, k), _knn_graph_in_place(x, k))
        if n > 1:  # the exported graph keeps the diagonal masked: no self-loops
            exported = _onnx_of(lambda t, k=k: knn_graph(t, k), x, tmp_path / "knn.onnx")
            assert np.array_equal(exported, knn_graph(x, k).numpy())


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


@pytest.mark.slow
def test_text_fused_model_exports_with_text_features_as_constants(tmp_path: Path) -> None:
    """hnf_llm_small (small width): the text side is computed once and baked into the graph, so
    the file holds no text encoder; logits still match PyTorch, and it is explained like HNF."""
    pytest.importorskip("transformers")
    overrides = {"embed_dim": 48, "num_heads": 2, "readout_heads": 2, "fusion_heads": 2}
    torch.manual_seed(0)
    classes = ["Nanowires", "Particles", "Porous_Sponge"]
    model = build_classifier("hnf_llm_small", num_classes=3, class_names=classes, **overrides).eval()
    meta = CheckpointMeta("hnf_llm_small", classes, overrides)
    out = export_model(model, meta, tmp_path / "llm.onnx")
    images = torch.stack([prepare_grey(synth_image(5, c, 0, 256)[0], meta.preprocessing)[0] for c in (4, 5, 7)])
    assert compare_with_torch(out, model, images) < 1e-3
    assert out.stat().st_size < 20e6  # MiniLM alone is ~90 MB: it is not in the graph
    _, explanations = explain_batch(model, images[:1])
    assert explanations[0].method == "hnf" and len(explanations[0].scales) == 3


def test_the_documented_onnx_route_without_hnf_agrees_with_hnf_predict_on_banded_images(
        hnf_small_checkpoint: Path, tmp_path: Path, shared_data: Path) -> None:
    """docs/onnx.md's example, run as written (hnf made unimportable) beside an export, on the NFFA
    images whose information band is burnt in: the same top class as `hnf predict`."""
    import re
    import subprocess
    import sys

    from hnf.predict import Predictor

    out = tmp_path / "model.onnx"
    assert runner.invoke(app, ["export", "onnx", "--checkpoint", str(hnf_small_checkpoint), "--out", str(out)]).exit_code == 0
    assert (tmp_path / "hnf_band.py").is_file()
    images = sorted(str(p) for p in (shared_data / "nffa-sample").rglob("*.jpg"))
    docs = (Path(__file__).resolve().parents[2] / "docs" / "onnx.md").read_text()
    example = re.search(r"## Example\n\n```python\n(.*?)```", docs, re.S).group(1)
    assert '["a.tif", "b.jpg"]' in example
    script = ("import sys\nsys.modules['hnf'] = None  # the route needs no hnf\n"
              + example.replace('["a.tif", "b.jpg"]', repr(images))
              + "\nprint('PROBS', json.dumps(probs.tolist()))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    probs = np.array(json.loads(done.stdout.split("PROBS", 1)[1]))
    predictor = Predictor.from_checkpoint(hnf_small_checkpoint)
    rows = list(predictor.predict_files(images))
    assert all(row.band is not None for row in rows)  # every one of these images carries a band
    expected = np.stack([row.probs for row in rows])
    assert (probs.argmax(1) == expected.argmax(1)).all()
    assert np.abs(probs - expected).max() < 0.05  # resampling differs slightly (docs: not bit for bit)
