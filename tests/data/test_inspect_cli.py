"""``hnf data inspect``: the JSON interface, the contact sheet, and bad input end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from hnf.cli import app

runner = CliRunner()


def _mixed_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("alpha", "beta"):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 80), dtype=np.uint8)).save(root / label / f"{i}.png")
    (root / "beta" / "copy.png").write_bytes((root / "beta" / "0.png").read_bytes())
    (root / "beta" / "zero.jpg").write_bytes(b"")
    (root / "beta" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (root / "beta" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def test_inspect_writes_the_documented_json_and_reports_bad_files(tmp_path: Path) -> None:
    data = _mixed_folder(tmp_path / "data")
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "inspect", str(data), "--out", str(out), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["classes"] == {"alpha": 3, "beta": 4}
    first = report["images"][0]
    assert set(first) >= {"path", "label", "width", "height", "mode", "band", "sha256", "group"}
    assert first["path"] == "alpha/0.png" and (first["width"], first["height"], first["mode"]) == (80, 64, "L")
    assert report["duplicates"]["exact"] == [["beta/0.png", "beta/copy.png"]]
    assert report["duplicates"]["near"] == []
    groups = {image["path"]: image["group"] for image in report["images"]}
    assert groups["beta/0.png"] == groups["beta/copy.png"] is not None and groups["alpha/0.png"] is None
    unreadable = {item["path"]: item["reason"] for item in report["unreadable"]}
    assert unreadable["beta/zero.jpg"] == "empty file (0 bytes)"
    assert unreadable["beta/cut.jpg"].startswith("cannot decode image") or "not a readable image" in unreadable["beta/cut.jpg"]
    assert unreadable["beta/notes.txt"].startswith("not an image file")
    assert report["warnings"] == [{"path": "empty/", "reason": "class folder has no images; class skipped"}]
    assert "skipped: beta/zero.jpg: empty file (0 bytes)" in result.output
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width > 300 and sheet.height >= 2 * 160


def test_inspect_exit_codes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'missing'}: no such file or folder" in result.output.replace("\n", "")
    (tmp_path / "bad" / "A").mkdir(parents=True)
    (tmp_path / "bad" / "A" / "x.png").write_bytes(b"")
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "bad"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "no readable images" in result.output


def test_inspect_real_folders(shared_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "nffa-sample"), "--out", str(tmp_path / "nffa")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "nffa" / "report.json").read_text())
    truth = json.loads((shared_data / "nffa-sample" / "banners.json").read_text())
    for image in report["images"]:
        assert abs(image["band"]["top"] - truth[image["path"]]["top"]) <= 4
    result = runner.invoke(app, ["data", "inspect", str(shared_data / "neu-surface"), "--out", str(tmp_path / "neu")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "neu" / "report.json").read_text())
    assert ["patches/patches_101.jpg", "patches/patches_105.jpg"] in report["duplicates"]["exact"]
    assert len(report["images"]) == 1800 and report["unreadable"] == []
