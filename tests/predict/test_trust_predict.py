"""Abstention and unknown inputs in ``hnf predict`` and the library's Predictor, the temperature
in predictions and in the ONNX export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from hnf.cli import app
from hnf.cli.predict_commands import synthetic_batch
from hnf.export import onnx_logits
from hnf.predict import Predictor
from hnf.train.checkpoint import Preprocessing
from hnf.trust import fit_ood, logits_and_embedding, save_trust, softmax

runner = CliRunner()


def test_abstention_coverage_matches_its_threshold(checkpoint: Path, synth_dir: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    files = sorted(synth_dir.rglob("*.png"))
    tops = np.array([r.top_k[0]["prob"] for r in predictor.predict_files(files)])
    for threshold in (0.0, *np.quantile(tops, [0.2, 0.5, 0.9]), 1.0):
        rows = list(predictor.predict_files(files, min_confidence=float(threshold)))
        coverage = np.mean([not r.abstain for r in rows])
        assert coverage == pytest.approx(np.mean(tops >= threshold))
        assert all(r.abstain == (r.top_k[0]["prob"] < threshold) for r in rows)
    assert all(r.abstain is False for r in predictor.predict_files(files))  # no minimum: never abstains


def test_cli_prints_the_coverage_and_refuses_a_minimum_outside_zero_one(checkpoint: Path, synth_dir: Path,
                                                                         tmp_path: Path) -> None:
    files = sorted(synth_dir.rglob("*.png"))[:4]
    out = tmp_path / "rows.json"
    result = runner.invoke(app, ["predict", *map(str, files), "--checkpoint", str(checkpoint), "--min-confidence", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "coverage 0.0%: 0 of 4 image(s) at confidence >= 1, 4 abstained" in result.output
    assert [r["abstain"] for r in json.loads(out.read_text())] == [True] * 4
    result = runner.invoke(app, ["predict", str(files[0]), "--checkpoint", str(checkpoint), "--min-confidence", "1.5"])
    assert result.exit_code == 2
    assert "--min-confidence 1.5: expected a probability between 0 and 1" in result.output


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, make_checkpoint, synth_dir: Path) -> Path:
    """The small resnet18 checkpoint with temperature 2.5 and a detector fitted on the ten synthetic
    images as two classes (their own scores set the thresholds)."""
    ckpt = make_checkpoint(tmp_path_factory.mktemp("calibrated") / "checkpoint", "resnet18", overrides={},
                           preprocessing=Preprocessing(img_size=64, resize=72), sharpen=1.0)
    predictor = Predictor.from_checkpoint(ckpt)
    prepared = [predictor.prepare(p) for p in sorted(synth_dir.rglob("*.png"))]
    with torch.no_grad():
        logits, embedding = logits_and_embedding(predictor.model, torch.stack([p.tensor for p in prepared]))
    labels = np.arange(len(prepared)) % 2  # two classes of five images
    save_trust(ckpt, 2.5, fit_ood(embedding.numpy(), labels, embedding.numpy(), logits.numpy()))
    return ckpt


def test_predictions_use_the_temperature_and_carry_the_unknown_flag(calibrated: Path, synth_dir: Path) -> None:
    predictor = Predictor.from_checkpoint(calibrated)
    assert predictor.trust.temperature == 2.5 and predictor.trust.ood is not None
    files = sorted(synth_dir.rglob("*.png"))
    rows = list(predictor.predict_files(files))
    batch = torch.stack([predictor.prepare(p).tensor for p in files])
    with torch.no_grad():
        logits = predictor.model(batch).numpy()
    np.testing.assert_allclose(np.stack([r.probs for r in rows]), softmax(logits, 2.5), atol=1e-5)
    flagged = [r.unknown for r in rows]
    assert sum(flagged) <= 1 and all(isinstance(r.ood_score, float) for r in rows)  # 95% of its own images accepted
    noise = np.random.default_rng(0).normal(0, 1, batch.shape).astype(np.float32) * 5
    _, scores = predictor.scores(torch.from_numpy(noise))
    assert (scores > predictor.trust.ood.thresholds["mahalanobis"]).all()


def test_onnx_bakes_the_temperature_into_its_probabilities_output(calibrated: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "onnx", "--checkpoint", str(calibrated), "--out", str(out)])
    assert result.exit_code == 0, result.output  # the logits still match PyTorch within 1e-3
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    assert {p.key: p.value for p in proto.metadata_props}["hnf.temperature"] == "2.5"
    import onnxruntime as ort

    images = synthetic_batch(calibrated, count=3).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probabilities"], {"image": images})
    np.testing.assert_allclose(probs, softmax(logits, 2.5), atol=1e-6)
    np.testing.assert_allclose(onnx_logits(out, images), logits)


def test_old_checkpoint_json_without_trust_fields_still_loads(checkpoint: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(checkpoint, old)
    meta = json.loads((old / "checkpoint.json").read_text())
    for key in ("temperature", "ood"):
        meta.pop(key, None)
    (old / "checkpoint.json").write_text(json.dumps(meta))
    predictor = Predictor.from_checkpoint(old)
    assert predictor.trust.temperature == 1.0 and predictor.trust.ood is None
