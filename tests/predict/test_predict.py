"""hnf predict: preprocessing equals training's, files/folders/globs, errors per file, JSON/CSV rows."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hnf.cli import app
from hnf.data.dataset import Sample
from hnf.data.synth.micrograph import SYNTH_CLASSES
from hnf.data.torch_dataset import MicrographDataset
from hnf.data.transforms import build_eval_transform
from hnf.predict import Predictor, collect_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint)


def test_preprocessing_matches_the_training_evaluation_pipeline(tmp_path: Path, predictor: Predictor) -> None:
    rng = np.random.default_rng(1)
    image = (rng.random((300, 410)) * 255).astype(np.uint8)  # not square, not the training size
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    dataset = MicrographDataset([Sample(path, "Fibres")], list(SYNTH_CLASSES), build_eval_transform(224))
    expected, _ = dataset[0]
    prepared = predictor.prepare(path)
    assert prepared.tensor.shape == (1, 224, 224)
    torch.testing.assert_close(prepared.tensor, expected, atol=1e-6, rtol=0)


def test_collect_inputs_files_folders_globs_and_missing(synth_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    paths, problems = collect_inputs([
        str(synth_dir / "Fibres"),                     # folder
        str(synth_dir / "Tips" / "tips_00000.png"),    # file
        str(synth_dir / "P*" / "*.png"),               # glob: Particles, Patterned_surface, Porous_Sponge, Powder
        str(synth_dir / "Fibres" / "fibres_00000.png"),  # duplicate, dropped
        str(tmp_path / "missing.png"), str(empty), str(tmp_path / "*.tif"),
    ])
    assert [p.parent.name for p in paths] == [
        "Fibres", "Tips", "Particles", "Patterned_surface", "Porous_Sponge", "Powder"]
    reasons = [p.error for p in problems]
    assert "no such file or folder" in reasons[0]
    assert "folder holds no image files" in reasons[1]
    assert "no image files match this pattern" in reasons[2]
    recursive, _ = collect_inputs([str(synth_dir)])
    assert len(recursive) == len(SYNTH_CLASSES)  # labels.csv is not an image


def test_predict_files_keeps_order_and_reports_each_bad_file(synth_dir: Path, tmp_path: Path, predictor: Predictor) -> None:
    good = sorted(synth_dir.rglob("*.png"))[:3]
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "noise.tif").write_bytes(np.random.default_rng(0).bytes(500))
    shutil.copy(good[0], tmp_path / "copy.png")
    files = [good[0], tmp_path / "zero.png", good[1], tmp_path / "noise.tif", good[2], tmp_path / "copy.png"]
    rows = list(predictor.predict_files(files, top_k=3, batch_size=2))
    assert [r.path for r in rows] == [str(f) for f in files]
    assert [r.error is None for r in rows] == [True, False, True, False, True, True]
    assert rows[1].error == f"{tmp_path / 'zero.png'}: empty file (0 bytes)"
    assert rows[3].error.startswith(f"{tmp_path / 'noise.tif'}: ")
    for row in rows:
        if row.error is None:
            assert len(row.top_k) == 3
            assert row.top_k[0]["prob"] >= row.top_k[1]["prob"] >= row.top_k[2]["prob"]
            assert abs(float(row.probs.sum()) - 1) < 1e-5
    np.testing.assert_allclose(rows[0].probs, rows[5].probs, atol=1e-6)  # same image, same answer
    # batching does not change answers
    single = list(predictor.predict_files([good[1]], top_k=3, batch_size=1))[0]
    np.testing.assert_allclose(single.probs, rows[2].probs, atol=1e-5)


def test_band_is_reported_and_cut(synth_dir: Path, predictor: Predictor) -> None:
    labels = [line.split(",") for line in (synth_dir / "labels.csv").read_text().splitlines()[1:]]
    with_band = [(synth_dir / rel, int(top)) for rel, _, top, _ in labels if top]
    without = [synth_dir / rel for rel, _, top, _ in labels if not top]
    assert with_band and without
    rows = list(predictor.predict_files([p for p, _ in with_band] + without, batch_size=4))
    for row, (path, top) in zip(rows, with_band):
        assert row.band is not None and abs(row.band.top - top) <= 3
        assert predictor.prepare(path).grey.shape[0] <= row.band.top  # the rows above the band
    assert all(row.band is None for row in rows[len(with_band):])


def test_cli_json_and_csv_rows(checkpoint: Path, synth_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    args = ["predict", str(synth_dir / "Fibres"), str(bad), str(synth_dir / "T*" / "*.png"),
            "--checkpoint", str(checkpoint), "--top-k", "3", "--batch-size", "2"]
    result = runner.invoke(app, [*args, "--out", str(out_json)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out_json.read_text())
    assert [Path(r["path"]).name for r in rows] == ["fibres_00000.png", "bad.jpg", "tips_00000.png"]
    for row in rows:
        assert set(row) == {"path", "top_k", "abstain", "unknown", "ood_score", "band", "pixel_size_m",
                            "field_of_view_m", "error"}
    assert rows[0]["error"] is None and len(rows[0]["top_k"]) == 3
    assert set(rows[0]["top_k"][0]) == {"class", "prob"} and rows[0]["top_k"][0]["class"] in SYNTH_CLASSES
    assert rows[1]["top_k"] == [] and rows[1]["error"].startswith(str(bad)) and rows[1]["band"] is None

    result = runner.invoke(app, [*args, "--out", str(out_csv)])
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(out_csv.open()))
    assert list(table[0]) == ["path", "top1_class", "top1_prob", "top2_class", "top2_prob", "top3_class",
                              "top3_prob", "abstain", "unknown", "ood_score", "band_top", "band_bottom", "error"]
    assert table[0]["top1_class"] == rows[0]["top_k"][0]["class"]
    assert abs(float(table[0]["top1_prob"]) - rows[0]["top_k"][0]["prob"]) < 1e-6
    assert table[1]["error"] == rows[1]["error"] and table[1]["top1_class"] == ""


def test_cli_exit_status(checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = runner.invoke(app, ["predict", str(bad), str(tmp_path / "none*.png"), "--checkpoint", str(checkpoint)])
    assert result.exit_code == 1  # nothing could be predicted
    assert "0 image(s) predicted, 2 error(s)" in result.output
    result = runner.invoke(app, ["predict", str(bad), "--checkpoint", str(tmp_path)])
    assert result.exit_code == 2 and "not a checkpoint folder" in result.output
    result = runner.invoke(app, ["predict", str(bad), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and "must end in .csv or .json" in result.output


def test_truncated_checkpoint_gives_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(checkpoint, copy)
    weights = next(copy.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    result = runner.invoke(app, ["predict", str(tmp_path), "--checkpoint", str(copy)])
    assert result.exit_code == 2
    assert "truncated or replaced file" in result.output


def test_checkpoint_of_another_version_or_architecture_gives_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    for change, message in [({"format": "hnf-checkpoint/99"}, "not an hnf checkpoint of format"),
                            ({"model_overrides": {"embed_dim": 64, "num_heads": 2, "readout_heads": 2}},
                             "weights do not fit the architecture")]:
        copy = tmp_path / f"ckpt-{len(message)}"
        shutil.copytree(checkpoint, copy)
        meta = json.loads((copy / "checkpoint.json").read_text())
        (copy / "checkpoint.json").write_text(json.dumps({**meta, **change}))
        result = runner.invoke(app, ["predict", str(tmp_path), "--checkpoint", str(copy)])
        assert result.exit_code == 2 and message in result.output, result.output


def test_run_folder_is_accepted_as_checkpoint(checkpoint: Path, synth_dir: Path) -> None:
    run = checkpoint.parent  # .../ckpt holds checkpoint/, like `hnf train --out RUN`
    predictor = Predictor.from_checkpoint(run)
    assert predictor.classes == list(SYNTH_CLASSES)
