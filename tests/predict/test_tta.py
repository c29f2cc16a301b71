"""Test-time augmentation: the views are the eight symmetries of the square, the average is the
mean of the per-view softmax, and evaluate / predict report it beside the plain scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF
from typer.testing import CliRunner

from hnf.cli import app
from hnf.predict import Predictor
from hnf.train.evaluate import evaluate_checkpoint
from hnf.tta import ViewsError, average_probabilities, dihedral_views, view_logits

runner = CliRunner()


def test_views_are_the_dihedral_group_in_torchvision_terms() -> None:
    torch.manual_seed(0)
    images = torch.randn(3, 1, 8, 8)
    views = dihedral_views(images, 8).view(8, 3, 1, 8, 8)
    reference = [TF.rotate(images, 90 * k) for k in range(4)]
    reference += [TF.rotate(TF.horizontal_flip(images), 90 * k) for k in range(4)]
    for view, expected in zip(views, reference):
        assert torch.equal(view, expected)
    assert torch.equal(dihedral_views(images, 4), torch.cat(reference[:4]))
    assert dihedral_views(images, 1) is images
    distinct = {tuple(v[0].flatten().tolist()) for v in views}
    assert len(distinct) == 8  # a random image has eight different symmetric copies


def test_average_is_the_mean_of_per_view_softmax() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    images = torch.randn(2, 1, 4, 4)
    logits = view_logits(model, images, 8)
    assert logits.shape == (8, 2, 5)
    expected = torch.stack([model(v).softmax(-1) for v in dihedral_views(images, 8).view(8, 2, 1, 4, 4)]).mean(0)
    torch.testing.assert_close(average_probabilities(logits), expected)
    assert torch.equal(logits[0], model(images))  # view 0 is the image as given


def test_views_reject_bad_counts_and_non_square_inputs() -> None:
    with pytest.raises(ViewsError, match=r"views must be one of \(1, 4, 8\) \(identity, quarter turns, quarter turns and flips\), got 3"):
        dihedral_views(torch.zeros(1, 1, 4, 4), 3)
    with pytest.raises(ViewsError, match=r"needs square inputs, got \(4, 6\)"):
        dihedral_views(torch.zeros(1, 1, 4, 6), 4)
    dihedral_views(torch.zeros(1, 1, 4, 6), 1)  # no views, no constraint


def test_evaluate_reports_averaged_and_plain_scores(checkpoint: Path, synth_dir: Path) -> None:
    plain = evaluate_checkpoint(checkpoint, synth_dir, device="cpu")
    averaged = evaluate_checkpoint(checkpoint, synth_dir, device="cpu", views=8)
    assert plain["tta_views"] == 1 and "identity_top1" not in plain
    assert averaged["tta_views"] == 8
    assert averaged["identity_top1"] == plain["top1"] and averaged["identity_macro_f1"] == plain["macro_f1"]
    assert averaged["loss"] == pytest.approx(plain["loss"], rel=1e-5)  # the loss is of the plain view
    with pytest.raises(ViewsError, match="got 2"):
        evaluate_checkpoint(checkpoint, synth_dir, device="cpu", views=2)


def test_predictor_and_cli_average_the_views(checkpoint: Path, synth_dir: Path, tmp_path: Path) -> None:
    files = sorted(synth_dir.rglob("*.png"))[:3]
    plain = Predictor.from_checkpoint(checkpoint)
    averaged = Predictor.from_checkpoint(checkpoint, views=8)
    batch = torch.stack([plain.prepare(f).tensor for f in files])
    expected = average_probabilities(torch.stack([plain.model(v) for v in dihedral_views(batch, 8).view(8, 3, *batch.shape[1:])]))
    np.testing.assert_allclose(averaged.probabilities(batch), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(averaged.probabilities(batch), plain.probabilities(batch))

    out = tmp_path / "rows.json"
    result = runner.invoke(app, ["predict", *map(str, files), "--checkpoint", str(checkpoint), "--tta-views", "8",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    top = [row["top_k"][0]["prob"] for row in rows]
    np.testing.assert_allclose(top, expected.max(-1).values.detach().numpy(), rtol=1e-5)
    result = runner.invoke(app, ["predict", str(files[0]), "--checkpoint", str(checkpoint), "--tta-views", "3"])
    assert result.exit_code == 2 and "views must be one of (1, 4, 8)" in result.output
