"""``hnf demo`` end to end on a small synthetic set (the full demo is `make demo`)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hnf.cli import app
from hnf.cli.demo_command import EVALUATION_RESERVE_S, MAX_EPOCHS


def test_demo_trains_the_text_fused_model_and_writes_the_report(tmp_path: Path) -> None:
    """Without --epochs the demo fits its training into the rest of --minutes (here a little)."""
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--per-class", "5", "--size", "128", "--band-prob", "0.5", "--minutes", "1", "--mlm-epochs", "0",
              "--precision", "fp32"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "run" / "config.json").read_text())
    assert 0 < config["time_budget_s"] < 60 - EVALUATION_RESERVE_S and config["precision"] == "fp32"
    assert f"training budget: {config['time_budget_s']:.0f} s (--minutes 1, less" in result.output
    assert f"trained hnf_llm_small for {config['epochs']} epochs" in result.output
    report = out / "report"
    data = json.loads((report / "data_report.json").read_text())
    assert len(data["classes"]) == 10 and all(count == 5 for count in data["classes"].values())
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["model"] == "hnf_llm_small" and len(metrics["classes"]) == 10
    assert metrics["epochs"] == config["epochs"] and 1 <= config["epochs"] <= MAX_EPOCHS
    assert metrics["tta_views"] == 8 and 0 <= metrics["identity_top1"] <= 1  # averaged and plain scores
    assert f"the images as given: top-1 {metrics['identity_top1']:.4f}" in result.output
    for name in ("contact_sheet.png", "confusion.png", "curves.png", "predictions.png"):
        assert (report / name).stat().st_size > 5_000, name
    assert "band detector against the generator's truth" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("demo report: ") and f"top-1 {metrics['top1']:.4f}" in last
