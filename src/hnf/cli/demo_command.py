"""``hnf demo``: the main job end to end on built-in synthetic micrographs, with no download.

1. generate synthetic micrographs of the ten NFFA classes (some with an information band);
2. inspect them like a real dataset, and check the band detector against the generator's truth;
3. take the shipped descriptions of the ten classes and adapt the text encoder to them briefly
   (masked-LM; held-out perplexity before and after);
4. train ``hnf_llm_lite0``: HNF on the ImageNet EfficientNet-Lite0 trunk shipped in a PyPI wheel
   (held-out test side, validation carved from training);
5. write a report folder: metrics, confusion matrix, curves, a sheet of test predictions.

The demo trains at 128 px by default (the trunk's stride-8, 16 and 32 maps: grids of 16x16, 8x8
and 4x4) with the Euler solver for the neural ODE, so that it finishes within minutes on two CPU
cores. ``--model hnf_llm_small`` trains the model from scratch instead, at 112 px with patch
sizes (16, 28) (it scores about 92% in the same time, against about 99% on the trunk:
BENCHMARKS.md); ``--img-size 224`` with ``--ode-method rk4`` is the paper's setting (use a GPU).

The demo trains as long as its wall-clock budget (``--minutes``) permits: training gets what is
left after generation, inspection and the text encoder, less a reserve for the test evaluation,
and the run plans its number of epochs from its measured pace (at most ``MAX_EPOCHS``;
:mod:`hnf.train.budget`: the median of recent epochs, re-planned longer or shorter until the
final decay phase, so a passing slowdown costs only the time it took). A faster machine therefore
trains longer; the epochs taken are printed and saved in the run's ``config.json``, and
``--epochs N`` fixes them instead. A run that trained under 70% of the epochs its fastest pace
would have fitted ends with a note that the machine was busy.
"""

from __future__ import annotations

import csv
import shutil
import time
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hnf.atomic import atomic_write_bytes, atomic_write_json
from hnf.cli.errors import reports_errors
from hnf.cli.inspect_command import console, print_report
from hnf.cli.train_commands import Precision, TtaViews
from hnf.train.config import TrainConfig

BAND_TOLERANCE_ROWS = 4
MAX_EPOCHS = 120
DEFAULT_IMG_SIZE = 112
EVALUATION_RESERVE_S = 45.0  # for the test side with eight views, the prediction sheet, start-up

if TYPE_CHECKING:
    from hnf.data.inspect import InspectionReport


def band_agreement(report: InspectionReport, labels_csv: Path) -> tuple[int, int, int, int]:
    """(found within tolerance, images with a band, band-free images flagged, band-free images)."""
    detected = {record.path: record.band for record in report.images}
    found = banded = flagged = clean = 0
    with labels_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            band = detected.get(row["path"])
            if row["band_top"]:
                banded += 1
                found += band is not None and abs(band.top - int(row["band_top"])) <= BAND_TOLERANCE_ROWS
            else:
                clean += 1
                flagged += band is not None
    return found, banded, flagged, clean


@reports_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the data, the run and the report.")] = Path("hnf-demo"),
    per_class: Annotated[int, typer.Option(help="Synthetic images per class.")] = 150,
    size: Annotated[int, typer.Option(help="Side of the generated images in pixels.")] = 128,
    img_size: Annotated[int | None, typer.Option(help="Crop fed to the model (default 112; for a trunk the next multiple of its coarsest stride, 128 for Lite0; patch sizes that divide it are used).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help=f"Training epochs (default: as many as fit --minutes, at most {MAX_EPOCHS}).")] = None,
    minutes: Annotated[float, typer.Option(min=1.0, help="Wall-clock budget of the whole demo, when --epochs is not given.")] = 8.5,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, one warm-up epoch, cosine decay).")] = TrainConfig.lr,
    ode_method: Annotated[str, typer.Option(help="Fixed-step ODE solver: euler (one field evaluation a step, the CPU setting) or rk4 (four, the model's default) or midpoint.")] = "euler",
    model: Annotated[str, typer.Option(help="Model to train (hnf_llm_small: from scratch).")] = "hnf_llm_lite0",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    band_prob: Annotated[float, typer.Option(help="Share of images given an information band.")] = 0.3,
    mlm_epochs: Annotated[int, typer.Option(help="Masked-LM epochs adapting the text encoder (0: skip).")] = 1,
    tta_views: TtaViews = 8,
    precision: Precision = "auto",
) -> None:
    """Synthesise micrographs, adapt the text encoder, train hnf_llm_lite0, evaluate, write a report."""
    from hnf.data.inspect import inspect_dataset, save_report, write_contact_sheet
    from hnf.data.synth import SYNTH_CLASSES, write_synthetic_dataset

    from hnf.models.config import scales_for_image
    from hnf.models.registry import trunk_crop_multiple
    from hnf.train.loop import train

    start = time.perf_counter()
    synthetic = out / "synthetic"
    total = per_class * len(SYNTH_CLASSES)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("generating", total=total)
        write_synthetic_dataset(synthetic, per_class, size, seed, band_prob, on_image=lambda done: progress.update(task, completed=done))
        task = progress.add_task("inspecting", total=total)
        report = inspect_dataset(synthetic, on_progress=lambda done, _: progress.update(task, completed=done))
    print_report(report)
    found, banded, flagged, clean = band_agreement(report, synthetic / "labels.csv")
    console.print(
        f"band detector against the generator's truth: {found}/{banded} bands found within "
        f"{BAND_TOLERANCE_ROWS} rows, {flagged}/{clean} band-free images flagged"
    )
    report_dir = out / "report"
    save_report(report, report_dir / "data_report.json")
    write_contact_sheet(report, report_dir / "contact_sheet.png")

    overrides: dict = {"ode_method": ode_method}
    stride = trunk_crop_multiple(model)
    if stride is None:
        img_size = img_size or DEFAULT_IMG_SIZE
        overrides["scales"] = list(scales_for_image(img_size, keep="patches"))  # (16, 28) at 112 px, as measured
    else:  # a trunk's scales are its feature strides, kept as registered; the crop fits its coarsest
        img_size = img_size or -(-DEFAULT_IMG_SIZE // stride) * stride
    if model.startswith("hnf_llm"):
        overrides.update(_language_branch(out, report_dir, mlm_epochs, seed))
    budget = None if epochs else minutes * 60 - (time.perf_counter() - start) - EVALUATION_RESERVE_S
    if budget is not None:
        console.print(f"training budget: {budget:.0f} s (--minutes {minutes:g}, less the steps so far and "
                      f"{EVALUATION_RESERVE_S:.0f} s kept for the evaluation)")
    config = TrainConfig(
        data=str(synthetic), out=str(out / "run"), model=model, model_overrides=overrides,
        epochs=epochs or MAX_EPOCHS, time_budget_s=budget, batch_size=32, lr=lr, img_size=img_size,
        seed=seed, tta_views=tta_views, precision=precision,
    )
    if (out / "run").exists():
        shutil.rmtree(out / "run")
    result = train(config)
    if result.interrupted:
        raise typer.Exit(130)
    for name in ("metrics.json", "confusion.png", "confusion.json", "curves.png", "metrics.jsonl"):
        shutil.copy2(out / "run" / name, report_dir / name)
    _prediction_sheet(out / "run", synthetic, report_dir / "predictions.png", tta_views)
    top1 = result.metrics["top1"]
    plain = (f" ({tta_views}-view average; the images as given: top-1 {result.metrics['identity_top1']:.4f}, "
             f"macro-F1 {result.metrics['identity_macro_f1']:.4f})") if tta_views > 1 else ""
    console.print(
        f"trained {model} for {result.epochs_done} epochs in {result.seconds:.0f} s ({result.images_per_s:.1f} img/s); "
        f"held-out top-1 {top1:.4f}, macro-F1 {result.metrics['macro_f1']:.4f}{plain}"
    )
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s")
    if result.budget_note:
        console.print(f"[yellow]note:[/yellow] {result.budget_note}")
    console.print(f"demo report: {report_dir}  top-1 {top1:.4f}", soft_wrap=True)


def _language_branch(out: Path, report_dir: Path, mlm_epochs: int, seed: int) -> dict:
    """Shipped descriptions of the ten classes, saved; the text encoder briefly adapted to them."""
    from hnf.data.synth import SYNTH_CLASSES
    from hnf.text.corpus import offline_descriptions

    from hnf.text.mlm import PretrainConfig, pretrain_mlm

    descriptions = offline_descriptions(list(SYNTH_CLASSES))
    descriptions_path = descriptions.save(out / "descriptions.json")
    overrides: dict = {"descriptions": str(descriptions_path)}
    if mlm_epochs > 0:
        console.print("adapting the text encoder to the descriptions (masked-LM) ...")
        brief = PretrainConfig(epochs=mlm_epochs, head_rounds=1, head_steps=40, eval_rounds=1, seed=seed)
        mlm = pretrain_mlm(descriptions, None, out / "text-encoder", brief)
        atomic_write_json(report_dir / "text_pretrain.json", mlm.to_json())
        console.print(
            f"held-out masked-LM perplexity {mlm.perplexity_before:.2f} -> {mlm.perplexity_after:.2f} "
            f"({mlm.train_seconds:.0f} s)"
        )
        overrides["text_encoder"] = str((out / "text-encoder").resolve())
    return overrides


def _prediction_sheet(run_dir: Path, data: Path, path: Path, views: int, count: int = 12) -> None:
    """A few held-out images with true and predicted class and confidence (``views`` as in the
    test metrics)."""
    import numpy as np

    from hnf.data.splits import load_split

    import torch
    from matplotlib.figure import Figure

    from hnf.predict import Predictor

    predictor = Predictor.from_checkpoint(run_dir / "checkpoint", views=views)
    test = load_split(run_dir / "split.json").folds[0].test
    picks = [test[i] for i in np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int)]
    prepared = [predictor.prepare(data / relative) for relative in picks]
    probabilities = predictor.probabilities(torch.stack([item.tensor for item in prepared]))
    figure = Figure(figsize=(12, 3.4 * ((len(picks) + 3) // 4)))
    axes = figure.subplots((len(picks) + 3) // 4, 4, squeeze=False).ravel()
    for axis, relative, item, probs in zip(axes, picks, prepared, probabilities):
        best = int(probs.argmax())
        truth = relative.split("/")[0]
        axis.imshow(item.grey, cmap="gray")
        colour = "green" if predictor.classes[best] == truth else "red"
        axis.set_title(f"true {truth}\npred {predictor.classes[best]} ({probs[best]:.0%})", fontsize=8, color=colour)
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    atomic_write_bytes(path, buffer.getvalue())
