"""New classes without retraining (hnf.classes): each row's math against a reference, and end to
end a briefly trained model that learns a fourth class from six images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax
from typer.testing import CliRunner

from hnf.classes import ClassesError, add_class, fit_head_row, imprint_row, text_row
from hnf.cli import app
from hnf.data.synth.micrograph import SYNTH_CLASSES
from hnf.predict import Predictor
from hnf.train.checkpoint import load_checkpoint
from hnf.trust import final_linear, load_trust

from ..conftest import write_noise_pngs
from .conftest import write_classes

runner = CliRunner()


def _reference_head_loss(params: np.ndarray, weight: np.ndarray, bias: np.ndarray, features: np.ndarray,
                         labels: np.ndarray, l2: float) -> float:
    """The class-balanced cross-entropy of hnf.classes written out in NumPy."""
    w, b = params[:-1], params[-1]
    logits = np.concatenate([features @ weight.T + bias, (features @ w + b)[:, None]], axis=1)
    nll = -log_softmax(logits, axis=1)[np.arange(len(labels)), labels]
    counts = np.bincount(labels, minlength=weight.shape[0] + 1)
    return float(sum(nll[labels == c].mean() for c in range(len(counts)) if counts[c]) / (counts > 0).sum()
                 + 0.5 * l2 * w @ w)


def test_the_head_row_is_the_minimum_scipy_finds_for_the_same_loss() -> None:
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(0, 1, (3, 6)), rng.normal(0, 0.3, 3)
    old = rng.normal(0, 1, (30, 6)) + np.repeat(np.eye(6)[:3] * 3, 10, axis=0)
    old_labels = np.repeat(np.arange(3), 10)
    new = rng.normal(0, 1, (5, 6)) + np.eye(6)[4] * 3
    w, b = fit_head_row(torch.tensor(weight), torch.tensor(bias), torch.tensor(old), torch.tensor(old_labels),
                        torch.tensor(new), l2=0.01)
    features, labels = np.concatenate([old, new]), np.concatenate([old_labels, [3] * 5])
    reference = minimize(_reference_head_loss, np.zeros(7), args=(weight, bias, features, labels, 0.01),
                         method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(np.append(w.numpy(), b.item()), reference.x, atol=1e-4)
    assert _reference_head_loss(np.append(w.numpy(), b.item()), weight, bias, features, labels, 0.01) <= reference.fun + 1e-9


def test_the_imprinted_row_points_at_the_mean_feature_with_the_old_rows_mean_norm() -> None:
    weight = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    w, b = imprint_row(weight, torch.tensor([1.0, -3.0]), torch.tensor([[1.0, 1.0], [3.0, 3.0]]))
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0]) / 2**0.5 * 2)  # radius (3 + 1) / 2 along (1, 1)
    assert b.item() == -1.0
    # centred on c = (1, 0): m = (1, 2); the new logit at c is the old logits' mean there, (4 - 3) / 2
    w, b = imprint_row(weight, torch.tensor([1.0, -3.0]), torch.tensor([[1.0, 1.0], [3.0, 3.0]]), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(w, 2 * torch.tensor([1.0, 2.0]) / 5**0.5)
    assert (w @ torch.tensor([1.0, 0.0]) + b).item() == pytest.approx(0.5)


def test_the_text_row_of_an_old_classes_own_description_vector_is_close_to_its_row() -> None:
    rng = np.random.default_rng(1)
    text, weight = torch.tensor(rng.normal(0, 1, (4, 16))), torch.tensor(rng.normal(0, 1, (4, 8)))
    w, _ = text_row(weight, torch.zeros(4), text, text[2], ridge=1e-8)
    torch.testing.assert_close(w, weight[2], atol=1e-5, rtol=0)
    far, _ = text_row(weight, torch.zeros(4), text, text[2], ridge=100.0)  # strong ridge: a shrunk blend
    assert far.norm() < 0.1 * weight[2].norm()


@pytest.fixture(scope="module")
def fourth_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six images of a class the trained run never saw (for adding it) and eight others of it plus
    four of each known class (to test with)."""
    root = tmp_path_factory.mktemp("fourth")
    add = write_classes(root / "add", [3], per_class=6, seed=21) / SYNTH_CLASSES[3]
    held = write_classes(root / "held", [0, 1, 2, 3], per_class=8, seed=22)
    return add, held


def test_an_added_class_is_predicted_and_the_known_classes_keep_theirs(trained_run: Path, fourth_class: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    add, held = fourth_class
    before = Predictor.from_checkpoint(trained_run)
    out = tmp_path / "bigger"
    report = add_class(trained_run, SYNTH_CLASSES[3], [add], out, say=lambda *a: None)
    assert report.method == "head"
    assert report.images == 6 and report.classes == [*before.classes, SYNTH_CLASSES[3]]
    after = Predictor.from_checkpoint(out)
    assert after.classes == report.classes and after.trust.temperature == before.trust.temperature
    files = {c: sorted((held / c).glob("*.png")) for c in SYNTH_CLASSES[:4]}
    new_rows = list(after.predict_files(files[SYNTH_CLASSES[3]]))
    recall = np.mean([r.top_k[0]["class"] == SYNTH_CLASSES[3] for r in new_rows])
    old_files = [f for c in SYNTH_CLASSES[:3] for f in files[c]]
    old_before = [r.top_k[0]["class"] for r in before.predict_files(old_files)]
    old_after = [r.top_k[0]["class"] for r in after.predict_files(old_files)]
    kept = np.mean([a == b for a, b in zip(old_before, old_after, strict=True)])
    assert recall >= 0.75 and kept >= 0.75, (recall, kept, report)
    # the detector knows the new class: its images are no more often unknown than the old ones
    assert after.trust.ood.means.shape[0] == 4 and after.trust.replay.labels.max() == 3
    assert np.mean([r.unknown for r in new_rows]) <= 0.5
    # the original checkpoint is untouched
    assert Predictor.from_checkpoint(trained_run).classes == before.classes


def test_the_cli_adds_a_class_and_the_new_checkpoint_exports_and_predicts(trained_run: Path,
                                                                         fourth_class: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    add, held = fourth_class
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    report_file = tmp_path / "report.json"
    result = runner.invoke(app, ["classes", "add", "--checkpoint", str(trained_run), "--name", "Porous",
                                 "--images", str(add), "--images", str(bad), "--out", str(tmp_path / "c2"),
                                 "--json", str(report_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    assert report["images"] == 6 and report["method"] == "head" and report["skipped"][0]["file"] == str(bad)
    assert f"skipped {bad}" in result.output and "of its 6 image(s) now assigned to 'Porous'" in result.output
    meta = json.loads((tmp_path / "c2" / "checkpoint.json").read_text())
    assert meta["classes"][-1] == "Porous" and meta["added_classes"] == [
        {"name": "Porous", "method": "head", "images": 6, "descriptions": 0}]
    rows = tmp_path / "rows.json"
    result = runner.invoke(app, ["predict", str(held / SYNTH_CLASSES[3]), "--checkpoint", str(tmp_path / "c2"),
                                 "--top-k", "4", "--out", str(rows)])
    assert result.exit_code == 0, result.output
    first = json.loads(rows.read_text())[0]
    assert {entry["class"] for entry in first["top_k"]} == {*SYNTH_CLASSES[:3], "Porous"}
    onnx_file = tmp_path / "c2.onnx"
    result = runner.invoke(app, ["export", "onnx", "--checkpoint", str(tmp_path / "c2"), "--out", str(onnx_file)])
    assert result.exit_code == 0, result.output and onnx_file.is_file()


def test_adding_refuses_what_it_cannot_do_with_messages_that_say_why(trained_run: Path, fourth_class: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    add, _ = fourth_class
    quiet = {"say": lambda *a: None}
    with pytest.raises(ClassesError, match=f"'{SYNTH_CLASSES[0]}' is already a class of"):
        add_class(trained_run, SYNTH_CLASSES[0], [add], tmp_path / "a", **quiet)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ClassesError, match="taken already exists; choose another --out"):
        add_class(trained_run, "X", [add], tmp_path / "taken", **quiet)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(ClassesError, match="resnet18 fuses no class descriptions, so it cannot learn 'X' without images"):
        add_class(trained_run, "X", [], tmp_path / "b", **quiet)
    with pytest.raises(ClassesError, match="--descriptions: resnet18 fuses no text"):
        add_class(trained_run, "X", [add], tmp_path / "c", descriptions=tmp_path / "d.json", **quiet)
    (tmp_path / "n").mkdir()
    noise = write_noise_pngs(tmp_path / "n", 1, 40, 40)
    (noise[0]).write_bytes(b"garbage")
    with pytest.raises(ClassesError, match="no readable image of 'X'"):
        add_class(trained_run, "X", noise, tmp_path / "e", **quiet)
    old = tmp_path / "old"
    shutil.copytree(trained_run / "checkpoint", old)
    meta = json.loads((old / "checkpoint.json").read_text())
    meta["ood"] = None  # a checkpoint written before the replay bank existed
    (old / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ClassesError, match="holds no training features of its classes .* use --method prototype"):
        add_class(old, "X", [add], tmp_path / "f", **quiet)
    report = add_class(old, "X", [add], tmp_path / "g", method="prototype", **quiet)  # imprinting needs no bank
    model, meta = load_checkpoint(tmp_path / "g")
    assert meta.classes[-1] == "X" and report.replay_kept is None and load_trust(tmp_path / "g", meta).ood is None
    before, _ = load_checkpoint(old)
    torch.testing.assert_close(final_linear(model).weight[:-1], final_linear(before).weight)
    shutil.rmtree(tmp_path / "g")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind


def test_a_text_fused_model_adds_a_class_from_its_descriptions_alone(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "predict"))
    import predict_support

    ckpt = predict_support.make_checkpoint(tmp_path / "llm", "hnf_llm_small",
                                           overrides={**predict_support.TINY, "scales": [8, 16]},
                                           preprocessing=None)
    descriptions = tmp_path / "graphene.json"
    descriptions.write_text(json.dumps({"Graphene": ["A single layer of carbon atoms, seen as thin wrinkled sheets.",
                                                     "Flakes of graphene with folded edges on a substrate."]}))
    report = add_class(ckpt, "Graphene", [], tmp_path / "c2", descriptions=descriptions, say=lambda *a: None)
    assert report.method == "text" and report.descriptions == 2 and report.images == 0
    model, meta = load_checkpoint(tmp_path / "c2")
    assert meta.classes[-1] == "Graphene" and model.text.classes[-1] == "Graphene"
    assert model.text.texts[-1][0].startswith("A single layer of carbon")
    old, _ = load_checkpoint(ckpt)
    assert not torch.equal(final_linear(model).weight[-1], torch.zeros_like(final_linear(model).weight[-1]))
    torch.testing.assert_close(final_linear(model).weight[:-1], final_linear(old).weight)
    assert load_trust(tmp_path / "c2", meta).ood is None
    x = torch.randn(2, 1, 224, 224)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, len(old.class_names) + 1)
