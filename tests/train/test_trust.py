"""Calibration, abstention and unknown inputs (hnf.trust): the math against hand-computed cases,
and end to end a briefly trained model that flags images unlike its classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from typer.testing import CliRunner

from hnf.cli import app
from hnf.models.factory import build_classifier
from hnf.predict import Predictor
from hnf.train.checkpoint import CheckpointError
from hnf.trust import (
    OODStats,
    TrustError,
    check_min_confidence,
    energy_score,
    expected_calibration_error,
    fit_ood,
    fit_temperature,
    logits_and_embedding,
    risk_coverage,
    softmax,
    temperature_nll,
)

from ..conftest import write_noise_pngs
from .conftest import write_classes

runner = CliRunner()


def test_ece_equals_a_hand_computed_case() -> None:
    probs = np.array([[0.9, 0.1], [0.88, 0.12], [0.2, 0.8], [0.3, 0.7], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 1, 0])
    # bins of width 1/15: 0.9 and 0.88 share (13/15, 14/15] (accuracy 1/2, confidence 0.89); 0.8, 0.7
    # and 0.55 are alone (wrong, right, right)
    expected = (2 * abs(0.5 - 0.89) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55)) / 5
    assert expected_calibration_error(probs, labels) == pytest.approx(0.466)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def _overconfident(seed: int, n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (a calibrated model's z), and the logits scale * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 5))
    p = softmax(z)
    labels = np.array([rng.choice(5, p=row) for row in p])
    return scale * z, labels


def test_temperature_fitted_on_one_set_lowers_the_ece_of_an_overconfident_model_on_another() -> None:
    fit_logits, fit_labels = _overconfident(0, 3000, scale=4.0)
    held_logits, held_labels = _overconfident(1, 3000, scale=4.0)
    temperature = fit_temperature(fit_logits, fit_labels)
    assert temperature == pytest.approx(4.0, rel=0.1)
    before = expected_calibration_error(softmax(held_logits), held_labels)
    after = expected_calibration_error(softmax(held_logits, temperature), held_labels)
    assert before > 0.15 and after < 0.03, (before, after)
    assert np.array_equal(softmax(held_logits).argmax(1), softmax(held_logits, temperature).argmax(1))


def test_the_fitted_temperature_is_the_nll_minimum_of_a_fine_grid() -> None:
    logits, labels = _overconfident(2, 500, scale=0.5)  # under-confident: T < 1
    temperature = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([temperature_nll(logits, labels, t) for t in grid])]
    assert temperature < 1 and temperature == pytest.approx(best, rel=0.01)
    assert temperature_nll(logits, labels, temperature) <= temperature_nll(logits, labels, best) + 1e-9


def test_risk_coverage_keeps_the_most_confident_images() -> None:
    confidence = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5])
    probs = np.stack([confidence, 1 - confidence], 1)
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])  # the two least confident are wrong
    rows = risk_coverage(probs, labels)
    assert [(r["coverage"], r["images"]) for r in rows] == [(1.0, 10), (0.95, 10), (0.9, 9), (0.8, 8)]
    assert [r["accuracy"] for r in rows] == [0.8, 0.8, pytest.approx(8 / 9), 1.0]


def test_min_confidence_outside_zero_one_is_refused_with_its_value() -> None:
    assert check_min_confidence(None) is None and check_min_confidence(0.0) == 0.0
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(TrustError, match=r"--min-confidence must be a probability in \[0, 1\], got "):
            check_min_confidence(bad)


def test_mahalanobis_and_energy_equal_their_formulas() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (60, 4)) + np.repeat(np.eye(4)[:3] * 5, 20, axis=0)
    labels = np.repeat(np.arange(3), 20)
    val = rng.normal(0, 1, (40, 4))
    logits = rng.normal(0, 2, (40, 3))
    stats = fit_ood(train, labels, val, logits)
    means = np.stack([train[labels == c].mean(0) for c in range(3)])
    np.testing.assert_allclose(stats.means, means, rtol=1e-5, atol=1e-6)
    centred = train - means[labels]
    sample = centred.T @ centred / len(train)
    a = stats.shrinkage
    shrunk = (1 - a) * sample + a * np.trace(sample) / 4 * np.eye(4)
    inverse = np.linalg.inv(shrunk)
    expected = np.array([min((e - m) @ inverse @ (e - m) for m in means) for e in val])
    np.testing.assert_allclose(stats.mahalanobis(val), expected, rtol=1e-4)
    np.testing.assert_allclose(energy_score(logits), -logsumexp(logits, axis=1), rtol=1e-12)
    for name, scores in stats.scores(val, logits).items():  # 95% of the validation side accepted
        assert np.mean(scores <= stats.thresholds[name]) >= 0.95
        assert np.mean(scores > stats.thresholds[name]) == pytest.approx(0.05, abs=0.026)


def test_knn_score_is_the_cosine_distance_to_the_kth_neighbour_sklearn_finds() -> None:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(3)
    train = rng.normal(0, 1, (80, 8)) + np.repeat(np.eye(8)[:4] * 4, 20, axis=0)
    val = rng.normal(0, 1, (30, 8)) * 3
    stats = fit_ood(train, np.repeat(np.arange(4), 20), val, rng.normal(0, 1, (30, 4)))
    assert stats.methods == ["mahalanobis", "energy", "knn"] and stats.knn_k == 5
    reference = NearestNeighbors(n_neighbors=5, metric="cosine").fit(train)
    distances, _ = reference.kneighbors(val)
    np.testing.assert_allclose(stats.knn(val), distances[:, -1], atol=1e-6)
    assert np.mean(stats.knn(val) > stats.thresholds["knn"]) == pytest.approx(0.05, abs=0.04)


def test_shrinkage_keeps_mahalanobis_finite_with_fewer_images_than_dimensions() -> None:
    rng = np.random.default_rng(1)
    stats = fit_ood(rng.normal(0, 1, (12, 64)), np.repeat([0, 1, 2], 4), rng.normal(0, 1, (6, 64)),
                    rng.normal(0, 1, (6, 3)))
    assert 0 < stats.shrinkage <= 1
    far = stats.mahalanobis(np.full((1, 64), 10.0))
    near = stats.mahalanobis(stats.means[:1])
    assert np.isfinite(far).all() and far[0] > 100 * max(near[0], 1e-6)


@pytest.mark.parametrize("name", ["hnf_small", "resnet18"])
def test_the_embedding_comes_with_the_models_own_logits(name: str) -> None:
    torch.manual_seed(0)
    overrides = {"embed_dim": 48, "num_heads": 2, "readout_heads": 2, "scales": [8, 16, 32]} if name == "hnf_small" else {}
    model = build_classifier(name, num_classes=3, img_size=64, **overrides).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, embedding = logits_and_embedding(model, x)
        torch.testing.assert_close(logits, model(x))
    assert embedding.shape == (2, 48 if name == "hnf_small" else 512)
    with pytest.raises(TrustError, match="Linear gives no embedding"):
        logits_and_embedding(torch.nn.Linear(3, 3), x)


def test_training_calibrates_and_fits_the_unknown_input_detector_into_the_checkpoint(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    meta = json.loads((trained_run / "checkpoint" / "checkpoint.json").read_text())
    assert metrics["temperature"] == meta["temperature"] != 1.0
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["ece_uncalibrated"] <= 1
    assert [r["coverage"] for r in metrics["risk_coverage"]] == [1.0, 0.95, 0.9, 0.8]
    assert (trained_run / "reliability.png").is_file() and (trained_run / "risk_coverage.png").is_file()
    assert meta["ood"]["method"] == "mahalanobis" and set(meta["ood"]["thresholds"]) == {"mahalanobis", "energy", "knn"}
    assert (trained_run / "checkpoint" / meta["ood"]["file"]).is_file()


def test_the_unknown_flag_fires_on_flat_noise_and_not_on_the_training_classes(trained_run: Path, tmp_path: Path) -> None:
    noise = write_noise_pngs(tmp_path, 4, 80, 80)
    known = sorted(write_classes(tmp_path / "known", [0, 1, 2], per_class=4, seed=11).rglob("*.png"))
    predictor = Predictor.from_checkpoint(trained_run)
    rows = {str(r.path): r for r in predictor.predict_files(noise + known)}
    assert all(rows[str(p)].unknown for p in noise), [rows[str(p)].ood_score for p in noise]
    assert np.mean([rows[str(p)].unknown for p in known]) <= 0.25
    threshold = predictor.trust.ood.thresholds["mahalanobis"]
    assert all((rows[str(p)].ood_score > threshold) == rows[str(p)].unknown for p in noise + known)


def test_evaluate_reports_ece_before_and_after_and_writes_both_plots(trained_run: Path, tmp_path: Path) -> None:
    data = Path(json.loads((trained_run / "config.json").read_text())["data"])
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(trained_run / "checkpoint"), "--data", str(data),
                                 "--split", str(trained_run / "split.json"), "--json", str(out), "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("temperature", "ece", "ece_uncalibrated"):
        assert scored[key] == pytest.approx(metrics[key], abs=1e-4), key  # fp32 like the training run
    assert [r["coverage"] for r in scored["risk_coverage"]] == [1.0, 0.95, 0.9, 0.8]
    assert (tmp_path / "eval.reliability.png").is_file() and (tmp_path / "eval.risk_coverage.png").is_file()


def test_a_checkpoint_without_trust_fields_loads_with_temperature_one_and_no_detector(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained_run / "checkpoint", old)
    meta = json.loads((old / "checkpoint.json").read_text())
    (old / meta.pop("ood")["file"]).unlink()
    meta.pop("temperature")
    (old / "checkpoint.json").write_text(json.dumps(meta))
    predictor = Predictor.from_checkpoint(old)
    assert predictor.trust.temperature == 1.0 and predictor.trust.ood is None
    image = next((Path(json.loads((trained_run / "config.json").read_text())["data"])).rglob("*.png"))
    row = next(predictor.predict_files([image]))
    assert row.error is None and row.unknown is None and row.ood_score is None and row.abstain is False


def test_an_altered_detector_file_is_a_clear_error(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run / "checkpoint", copy)
    name = json.loads((copy / "checkpoint.json").read_text())["ood"]["file"]
    (copy / name).write_bytes((copy / name).read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="unknown-input statistics do not match checkpoint.json"):
        Predictor.from_checkpoint(copy)


def test_unknown_means_the_score_lies_above_the_threshold() -> None:
    stats = OODStats(np.zeros((1, 2), np.float32), np.eye(2, dtype=np.float32), 0.0, {"mahalanobis": 1.0, "energy": 0.0})
    assert stats.unknown(stats.mahalanobis(np.array([[0.5, 0.5], [2.0, 0.0]]))).tolist() == [False, True]


def test_one_image_per_class_falls_back_to_euclidean_distance() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, (3, 5))
    stats = fit_ood(train, np.arange(3), train, rng.normal(0, 1, (3, 3)))
    point = rng.normal(0, 1, (1, 5))
    assert stats.shrinkage == 1.0
    assert stats.mahalanobis(point)[0] == pytest.approx(min(((point[0] - t) ** 2).sum() for t in train), rel=1e-5)
