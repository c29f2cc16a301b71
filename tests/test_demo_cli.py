"""``hnf demo`` end to end on a small synthetic set (the full demo is `make demo`; its time budget's
planner is tested in tests/train/test_budget.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from hnf.cli import app


def test_demo_trains_the_text_fused_model_learns_and_writes_the_report(tmp_path: Path) -> None:
    """Eight epochs on 16 images a class learn the ten classes well above chance (0.1): on the
    32 held-out images a chance model reaches top-1 0.25 with probability under 1%."""
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--per-class", "16", "--size", "128", "--band-prob", "0.5", "--epochs", "8",
              "--mlm-epochs", "0", "--precision", "fp32", "--seed", "0", "--model", "hnf_llm_small"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["time_budget_s"] is None and config["epochs"] == 8 and config["precision"] == "fp32"
    assert "training budget" not in result.output and "trained hnf_llm_small for 8 epochs" in result.output
    report = out / "report"
    data = json.loads((report / "data_report.json").read_text())
    assert len(data["classes"]) == 10 and all(count == 16 for count in data["classes"].values())
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["model"] == "hnf_llm_small" and len(metrics["classes"]) == 10 and metrics["epochs"] == 8
    assert metrics["images"] == 32 and metrics["tta_views"] == 8
    # learning: held-out top-1 (averaged and plain) well above chance, held-out loss under ln 10
    # (a uniform guess), and the training loss falling
    assert metrics["top1"] >= 0.25 and metrics["identity_top1"] >= 0.25
    assert metrics["test_loss"] < 0.9 * math.log(10)
    log = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["train_loss"] < log[0]["train_loss"] - 0.3
    assert f"the images as given: top-1 {metrics['identity_top1']:.4f}" in result.output
    for name in ("contact_sheet.png", "confusion.png", "curves.png", "predictions.png"):
        assert (report / name).stat().st_size > 5_000, name
    assert "band detector against the generator's truth" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("demo report: ") and f"top-1 {metrics['top1']:.4f}" in last


def test_demo_on_the_trunk_crops_to_a_multiple_of_its_coarsest_stride(tmp_path: Path) -> None:
    """The default model is HNF on the Lite0 trunk; at the default crop (112 px for scratch
    models) its stride-32 map would not tile, so the demo takes 128 px: grids 16, 8 and 4."""
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--per-class", "4", "--size", "128", "--epochs", "1", "--mlm-epochs", "0",
              "--tta-views", "1", "--precision", "fp32", "--seed", "0"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["model"] == "hnf_llm_lite0" and config["img_size"] == 128
    assert "trained hnf_llm_lite0 for 1 epochs" in result.output
