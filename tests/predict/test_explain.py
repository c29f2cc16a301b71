"""Explanations: HNF attention and gates per scale, occlusion for timm models, the PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image
from typer.testing import CliRunner

from hnf.cli import app
from hnf.data.metadata import Metadata, format_length
from hnf.explain import (
    analysed_region,
    explain_batch,
    explanation_figure,
    nice_length,
    prediction_figure_options,
    render_explanation,
    upsample,
    verdict_lines,
    verdict_of,
)
from hnf.predict import Prediction, Predictor, prepare_grey
from hnf.train.checkpoint import Preprocessing

LONG_NAME = ("Ferrite with Widmanstaetten side plates and grain-boundary cementite networks "
             "(hypoeutectoid steel, slowly cooled) Supercalifragilisticexpialidocious_microstructure_label")

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
    assert image.size == (1450, 620)  # the summary picture
    experts = tmp_path / "experts"
    result = runner.invoke(app, ["predict", str(files[0]), "--checkpoint", str(checkpoint), "--explain", str(experts),
                                 "--explain-style", "experts"])
    assert result.exit_code == 0, result.output
    assert Image.open(next(experts.iterdir())).size[1] > 620  # the expert rows below the summary
    result = runner.invoke(app, ["predict", str(files[0]), "--checkpoint", str(checkpoint), "--explain", str(experts),
                                 "--explain-style", "gates"])
    assert result.exit_code == 2 and "--explain-style gates" in result.output


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


# -- the summary picture --------------------------------------------------------------------------


def _predicted(checkpoint: Path, path: Path) -> tuple[Predictor, Prediction]:
    predictor = Predictor.from_checkpoint(checkpoint)
    row = list(predictor.predict_files([path], top_k=5, explain=True))[0]
    assert row.error is None, row.error
    return predictor, row


def _figure(predictor: Predictor, row: Prediction, **changes):
    options = {**prediction_figure_options(row, predictor.pre), **changes}
    return explanation_figure(row.prepared.grey, row.prepared.view, row.explanation, row.top_k, row.path,
                              row.band, predictor.model_name, **options)


def _by_gid(fig, gid: str) -> list:
    return [a for a in fig.findobj(lambda a: a.get_gid() == gid)]


def _panels(fig) -> tuple:
    micrograph, region, bars = [ax for ax in fig.axes if ax.get_gid() != "heat-colorbar"][:3]
    return micrograph, region, bars


def test_summary_marks_the_region_and_has_a_colour_scale(checkpoint: Path, synth_dir: Path) -> None:
    predictor, row = _predicted(checkpoint, sorted(synth_dir.rglob("*.png"))[0])
    fig = _figure(predictor, row)
    assert tuple(fig.get_size_inches() * fig.dpi) == (1450, 620)
    micrograph, region_ax, bars = _panels(fig)
    boxes = _by_gid(fig, "analysed-region")
    assert len(boxes) == 1 and boxes[0].axes is micrograph
    height, width = row.prepared.grey.shape
    region = analysed_region(height, width, predictor.pre, row.prepared.metadata)
    assert boxes[0].get_xy() == (region.left, region.top)
    assert (boxes[0].get_width(), boxes[0].get_height()) == (region.width, region.height)
    assert region.height == pytest.approx(224 * min(height, width) / 256)  # resize 256, crop 224
    colourbars = [ax for ax in fig.axes if ax.get_gid() == "heat-colorbar"]
    assert len(colourbars) == 1
    label = colourbars[0].get_ylabel()
    assert "attention relative to an even spread" in label and "14x14" in label  # the finest grid
    heat = region_ax.get_images()[1].get_array()
    assert heat.shape == (224, 224)
    finest = row.explanation.fine_map()
    assert finest.shape == (14, 14) and finest.mean() == pytest.approx(1, abs=1e-4)
    np.testing.assert_allclose(heat, upsample(finest, (224, 224), mode="bicubic"), atol=1e-6)
    assert len(np.unique(np.round(heat, 6))) > 1000  # smooth, not 14 x 14 blocks
    assert not _by_gid(fig, "scale-bar")  # the synthetic PNG states no pixel size
    assert "pixel size not stated in the file" in micrograph.get_xlabel()


def test_full_class_names_are_never_cut_off(checkpoint: Path, synth_dir: Path) -> None:
    predictor, row = _predicted(checkpoint, sorted(synth_dir.rglob("*.png"))[1])
    row.top_k[0]["class"] = LONG_NAME
    fig = _figure(predictor, row)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    names = [_by_gid(fig, f"class-name-{i}")[0] for i in range(5)]
    assert [" ".join(t.get_text().split()) for t in names] == [e["class"] for e in row.top_k]
    assert "\n" in names[0].get_text()  # wrapped at spaces, not truncated
    page = fig.bbox
    for text in names:
        box = text.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, text.get_text()
    assert "predicted: " + LONG_NAME in fig.get_suptitle()


def test_scale_bar_exactly_when_the_pixel_size_is_known(shared_data: Path, checkpoint: Path) -> None:
    tiff = shared_data / "microscope-tiff" / "fei" / "FEI-Helios-Ebeam-8bits.tif"
    predictor, row = _predicted(checkpoint, tiff)
    assert row.pixel_size_m == pytest.approx(3.3724e-6)
    fig = _figure(predictor, row)
    micrograph, region_ax, _ = _panels(fig)
    bars = _by_gid(fig, "scale-bar")
    assert {bar.axes for bar in bars} == {micrograph, region_ax}  # the full image and the analysed region
    width = row.prepared.grey.shape[1]
    expected = format_length(nice_length(width * 3.3724e-6 / 5))
    on_micrograph = next(bar for bar in bars if bar.axes is micrograph)
    assert [t.get_text() for t in on_micrograph.findobj(Text)] == [expected]
    assert "pixel size 3.37 µm" in micrograph.get_xlabel() and "field of view" in micrograph.get_xlabel()
    unknown = _figure(predictor, row, pixel_size_m=None, field_of_view_m=None)
    assert not _by_gid(unknown, "scale-bar")
    assert "pixel size not stated in the file" in _panels(unknown)[0].get_xlabel()


def test_analysed_region_is_where_the_crop_came_from() -> None:
    rng = np.random.default_rng(0)
    smooth = upsample(rng.random((12, 20)), (300, 500), mode="bicubic")
    for pre, metadata in ((Preprocessing(img_size=64, resize=72), None),
                          (Preprocessing(img_size=64, resize=72, pixel_size_nm=20.0), Metadata(pixel_size_m=5e-9)),
                          (Preprocessing(img_size=64, resize=48), None)):  # resize below the crop: grown
        _, view = prepare_grey(smooth, pre, metadata)
        region = analysed_region(*smooth.shape, pre, metadata)
        top, left = round(region.top), round(region.left)
        crop = smooth[top : top + round(region.height), left : left + round(region.width)]
        again = upsample(crop, view.shape)
        assert np.corrcoef(again.ravel(), view.ravel())[0, 1] > 0.98, pre
    region = analysed_region(300, 500, Preprocessing(img_size=64, resize=72, pixel_size_nm=20.0),
                             Metadata(pixel_size_m=5e-9))
    assert region.width == pytest.approx(64 * 20 / 5)  # 256 file pixels of 5 nm at 20 nm per model pixel


def test_verdict_in_plain_words() -> None:
    from types import SimpleNamespace

    assert verdict_of(SimpleNamespace(path="old row")) is None and verdict_lines(None) == []
    unknown = verdict_lines(verdict_of(SimpleNamespace(abstain=True, unknown=True, ood_score=12.5), 0.6))
    assert [kind for _, kind in unknown] == ["unknown", "abstain"]
    assert "12.5" in unknown[0][0] and "60%" in unknown[1][0]
    accepted = verdict_lines(verdict_of(SimpleNamespace(abstain=False, unknown=False, ood_score=1.0), 0.6))
    assert accepted == [("ACCEPTED: top probability at least 60% and like the images the model was trained on",
                         "accepted")]
    unchecked = verdict_lines(verdict_of(SimpleNamespace(abstain=False, unknown=None, ood_score=None)))
    assert [kind for _, kind in unchecked] == ["note", "note"]  # no threshold set, no detector


def test_verdict_is_drawn_from_the_row(checkpoint: Path, synth_dir: Path) -> None:
    predictor, row = _predicted(checkpoint, sorted(synth_dir.rglob("*.png"))[2])
    row.abstain, row.unknown, row.ood_score = True, True, 7.25
    fig = _figure(predictor, row, verdict=verdict_of(row, 0.9))
    assert "7.25" in _by_gid(fig, "verdict-unknown")[0].get_text()
    assert "90%" in " ".join(_by_gid(fig, "verdict-abstain")[0].get_text().split())
    assert not _by_gid(fig, "verdict-accepted")


def test_experts_style_still_draws_the_expert_panels(checkpoint: Path, synth_dir: Path, tmp_path: Path,
                                                     make_checkpoint) -> None:
    predictor, row = _predicted(checkpoint, sorted(synth_dir.rglob("*.png"))[3])
    fig = _figure(predictor, row, style="experts")
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("read-out attention, patch" in t for t in titles) == 3
    assert sum("dominant: " in t for t in titles) == 3
    legend = [t.get_text() for sub in fig.subfigs for lg in sub.legends for t in lg.get_texts()]
    assert legend == ["sequence", "graph", "interaction"]
    assert _by_gid(fig, "analysed-region") and [ax for ax in fig.axes if ax.get_gid() == "heat-colorbar"]
    with pytest.raises(ValueError, match="summary, experts"):
        _figure(predictor, row, style="gates")
    pre = Preprocessing(img_size=64, resize=72)
    resnet = Predictor.from_checkpoint(make_checkpoint(tmp_path / "resnet", "resnet18", overrides={},
                                                       preprocessing=pre))
    plain = list(resnet.predict_files(sorted(synth_dir.rglob("*.png"))[:1], explain=True))[0]
    fig = _figure(resnet, plain, style="experts")
    assert any("no expert gates" in t.get_text() for t in fig.findobj(Text))
    label = next(ax for ax in fig.axes if ax.get_gid() == "heat-colorbar").get_ylabel()
    assert label.startswith(f"drop in P({plain.top_k[0]['class']})") and "7x7" in label
