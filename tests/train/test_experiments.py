"""Cross-validation, ablation grid and baselines: shared splits, reuse of finished runs, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hnf.cli import app
from hnf.data.splits import load_split
from hnf.data.synth import write_synthetic_dataset
from hnf.models.registry import list_models
from hnf.train.experiments import Variant, ablation_grid, baseline_grid, run_variants
from hnf.train.loop import TrainConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", per_class=5, size=72, seed=7)


def test_cv_folds_partition_the_data_and_report_mean_and_std(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv"
    args = ["cv", "--data", str(data), "--model", "resnet18", "--folds", "2", "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--img-size", "64", "--precision", "fp32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folds = load_split(out / "folds.json")
    tested = sorted(p for fold in folds.folds for p in fold.test)
    assert len(tested) == 50 and len(set(tested)) == 50
    report = (out / "report.md").read_text()
    assert "| fold | top-1 |" in report and "| top1 |" in report and "| macro_f1 |" in report
    first = out / "fold-01" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    assert CliRunner().invoke(app, args).exit_code == 0
    assert first.stat().st_mtime_ns == stamp  # finished folds are reused, not retrained


def test_variants_share_one_split(data: Path, tmp_path: Path) -> None:
    base = TrainConfig(data=str(data), epochs=1, batch_size=8, img_size=64, resize=72, precision="fp32")
    rows = run_variants([Variant("resnet", "resnet18"), Variant("convnext", "convnext_atto")], base, tmp_path)
    assert [row["variant"] for row in rows] == ["resnet", "convnext"]
    splits = {(tmp_path / slug / "split.json").read_text() for slug in ("resnet", "convnext")}
    assert len(splits) == 1 and (tmp_path / "split.json").read_text() in splits


def test_ablation_grid_switches_one_part_each() -> None:
    grid = ablation_grid()
    overrides = [v.overrides for v in grid]
    for switch in ({"use_ode": False}, {"use_graph": False}, {"use_sequence": False}, {"use_gate": False},
                   {"scales": [16]}, {"cross_scale": False}):
        assert switch in overrides
    if "hnf_llm_small" in list_models():
        assert {"use_cross_attention": False} in overrides
        assert any(v.label == "without text" and v.model == "hnf_small" for v in grid)
    assert [v.model for v in baseline_grid()] == ["resnet18", "convnext_atto", "vit_tiny_patch16_224"]
    assert json.dumps([v.slug for v in grid])
