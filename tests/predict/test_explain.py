"""Explanations: HNF attention and gates per scale, occlusion for timm models, the PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hnf.cli import app
from hnf.explain import explain_batch, render_explanation
from hnf.predict import Predictor
from hnf.train.checkpoint import Preprocessing

runner = CliRunner()


def test_hnf_explanation_per_scale_and_combined(checkpoint: Path, synth_dir: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    files = sorted(synth_dir.rglob("*.png"))[:2]
    rows = list(predictor.predict_files(files, top_k=5, explain=True))
    plain = list(predictor.predict_files(files, top_k=5))
    for row, same in zip(rows, plain):
        np.testing.assert_allclose(row.probs, same.probs, atol=1e-5)  # explaining changes nothing
        ex = row.explanation
        assert ex.method == "hnf" and ex.target == int(row.probs.argmax())
        assert ex.combined.shape == (224, 224) and 0 <= ex.combined.min() and ex.combined.max() == pytest.approx(1)
        assert [s.patch for s in ex.scales] == [16, 28, 32]
        assert [s.grid for s in ex.scales] == [(14, 14), (8, 8), (7, 7)]
        assert sum(s.weight for s in ex.scales) == pytest.approx(1, abs=1e-5)
        for scale in ex.scales:
            assert set(scale.shares) == {"sequence", "graph", "interaction"}
            assert sum(scale.shares.values()) == pytest.approx(1, abs=1e-4)
            assert scale.dominant == max(scale.shares, key=scale.shares.get)
            assert scale.expert_map.shape == scale.grid
    png = render_explanation(rows[0].prepared.grey, rows[0].prepared.view, rows[0].explanation, rows[0].top_k,
                             "title", rows[0].band, "hnf_small")
    assert png.startswith(b"\x89PNG")


def test_timm_model_falls_back_to_occlusion(tmp_path: Path, synth_dir: Path, make_checkpoint) -> None:
    pre = Preprocessing(img_size=64, resize=72)
    ckpt = make_checkpoint(tmp_path / "resnet", "resnet18", overrides={}, preprocessing=pre)
    predictor = Predictor.from_checkpoint(ckpt)
    row = list(predictor.predict_files(sorted(synth_dir.rglob("*.png"))[:1], explain=True))[0]
    assert row.error is None
    ex = row.explanation
    assert ex.method == "occlusion" and ex.scales == []
    assert ex.combined.shape == (64, 64) and ex.combined.max() <= 1
    probs, again = explain_batch(predictor.model, row.prepared.tensor[None])
    np.testing.assert_allclose(probs[0], row.probs, atol=1e-5)
    png = render_explanation(row.prepared.grey, row.prepared.view, ex, row.top_k, "t", None, "resnet18")
    assert Image.open(__import__("io").BytesIO(png)).size[0] > 200


def test_cli_explain_writes_one_png_per_readable_image(checkpoint: Path, synth_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    files = sorted(synth_dir.rglob("*.png"))[:2]
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "explain"
    result = runner.invoke(app, ["predict", *map(str, files), str(bad), "--checkpoint", str(checkpoint),
                                 "--explain", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{f.name}.explain.png" for f in files)
    image = Image.open(out / written[0])
    assert image.size[0] >= 600 and image.size[1] >= 600


def test_predict_and_explain_on_shared_data(shared_data: Path, checkpoint: Path, tmp_path: Path) -> None:
    """Real micrographs (NFFA with the information band burnt in, UHCS without) go through, and the
    bands reported are the hand-checked ones of nffa-sample/banners.json."""
    nffa = shared_data / "nffa-sample"
    uhcs = sorted((shared_data / "uhcs-3class" / "pearlite").glob("*.jpg"))[:1]
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["predict", str(nffa), *map(str, uhcs), "--checkpoint", str(checkpoint),
                                 "--out", str(out), "--explain", str(tmp_path / "ex")])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).relative_to(r["path"].split("/nffa-sample/")[0] + "/nffa-sample").as_posix()
            if "/nffa-sample/" in r["path"] else "uhcs": r for r in json.loads(out.read_text())}
    assert len(rows) == 4 and all(r["error"] is None for r in rows.values())
    assert rows["uhcs"]["band"] is None
    banners = json.loads((nffa / "banners.json").read_text())
    for name, truth in banners.items():
        if not name.startswith("_"):
            assert abs(rows[name]["band"]["top"] - truth["top"]) <= 8, name
    assert len(list((tmp_path / "ex").iterdir())) == 4
