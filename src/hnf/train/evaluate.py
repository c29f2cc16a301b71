"""Evaluation: run a model over a loader, then score with scikit-learn's metrics.

Metrics (``metrics.json``): ``top1``, ``top5`` (with at least 5 classes), ``macro_f1``,
``per_class_precision`` and ``per_class_recall`` (class name to value), ``confusion_matrix``
(rows = true class, columns = predicted, in ``classes`` order), ``classes``, ``images``, and
``tta_views``, the number of symmetries the scores average (:mod:`hnf.tta`); with more than one,
also ``identity_top1`` and ``identity_macro_f1`` of the images as given. With the checkpoint's
temperature T (:mod:`hnf.trust`) the probabilities are softmax(z / T); ``temperature``, ``ece``
(calibrated), ``ece_uncalibrated`` (T = 1), ``risk_coverage`` (``[{coverage, accuracy, images}]``
at 100/95/90/80% coverage) and ``reliability`` (the 15 bins) describe how far to trust them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)
from torch.utils.data import DataLoader

from hnf.atomic import atomic_write_bytes
from hnf.data.dataset import index_dataset
from hnf.data.inspect import inspect_dataset
from hnf.data.splits import load_split
from hnf.data.torch_dataset import MicrographDataset
from hnf.data.transforms import build_eval_transform
from hnf.errors import HnfError
from hnf.train.checkpoint import load_checkpoint
from hnf.train.device import autocast_dtype, pick_device
from hnf.tta import average_probabilities, check_views, view_logits


@dataclass
class LoaderPredictions:
    """What :func:`predict_loader` returns.

    probs: (N, C) class probabilities, averaged over the test-time views (:mod:`hnf.tta`).
    identity_probs: (N, C) probabilities of the image as given (the same array when views = 1).
    labels: (N,) true class indices.
    loss: mean cross-entropy of the image as given (raw logits, T = 1).
    views: how many symmetries ``probs`` averages.
    uncalibrated_probs: (N, C) ``probs`` at temperature 1 (the same array when T = 1).
    temperature: the T of ``probs`` = mean_v softmax(z_v / T).
    """

    probs: np.ndarray
    identity_probs: np.ndarray
    labels: np.ndarray
    loss: float
    views: int
    uncalibrated_probs: np.ndarray | None = None
    temperature: float = 1.0


@torch.no_grad()
def predict_loader(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    views: int = 1,
    temperature: float = 1.0,
) -> LoaderPredictions:
    """Run the model over a loader; ``views`` > 1 averages over symmetries (:mod:`hnf.tta`),
    ``temperature`` divides the logits before the softmax (``uncalibrated_probs`` keep T = 1)."""
    model.eval()
    probs, identity, labels, loss_sum, raw = [], [], [], 0.0, []
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        context = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        with context:
            logits = view_logits(model, images, views)
        logits = logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits[0], targets, reduction="sum").item()
        probs.append(average_probabilities(logits / temperature).cpu().numpy())
        identity.append((logits[0] / temperature).softmax(dim=1).cpu().numpy() if views > 1 else probs[-1])
        raw.append(average_probabilities(logits).cpu().numpy() if temperature != 1.0 else probs[-1])
        labels.append(targets.cpu().numpy())
    count = sum(len(batch) for batch in labels)
    return LoaderPredictions(np.concatenate(probs), np.concatenate(identity), np.concatenate(labels),
                             loss_sum / max(count, 1), views, np.concatenate(raw), temperature)


def score(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The metrics of the module docstring from probabilities and true labels.

    A class with no image among ``labels`` has no recall (null) and is left out of macro-F1 (an
    F1 of 0 there would measure the data, not the model); ``classes_without_images`` names them.
    """
    indices = list(range(len(classes)))
    present = sorted(set(int(label) for label in labels))
    predicted = probs.argmax(axis=1)
    precision, recall, _, _ = precision_recall_fscore_support(labels, predicted, labels=indices, zero_division=0)
    metrics: dict[str, Any] = {
        "images": int(len(labels)),
        "top1": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=present, average="macro", zero_division=0)) if present else 0.0,
        "per_class_precision": {c: float(p) for c, p in zip(classes, precision)},
        "per_class_recall": {c: (float(r) if i in present else None) for i, (c, r) in enumerate(zip(classes, recall))},
        "classes_without_images": [c for i, c in enumerate(classes) if i not in present],
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "classes": list(classes),
    }
    if len(classes) >= 5:
        metrics["top5"] = float(top_k_accuracy_score(labels, probs, k=5, labels=indices))
    return metrics


def score_predictions(predictions: LoaderPredictions, classes: list[str]) -> dict[str, Any]:
    """:func:`score` of the view-averaged probabilities, with ``tta_views`` and the calibration
    metrics of :func:`hnf.trust.calibration_metrics`; with more than one view also
    ``identity_top1`` and ``identity_macro_f1``, the scores of the images as given."""
    from hnf.trust import calibration_metrics

    metrics = score(predictions.probs, predictions.labels, classes)
    metrics["tta_views"] = predictions.views
    uncalibrated = predictions.uncalibrated_probs if predictions.uncalibrated_probs is not None else predictions.probs
    metrics.update(calibration_metrics(uncalibrated, predictions.probs, predictions.labels, predictions.temperature))
    if predictions.views > 1:
        identity = score(predictions.identity_probs, predictions.labels, classes)
        metrics.update(identity_top1=identity["top1"], identity_macro_f1=identity["macro_f1"])
    return metrics


def plot_confusion(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Confusion matrix as a PNG, row-normalised colours with the counts written in."""
    matrix = np.asarray(metrics["confusion_matrix"], dtype=float)
    classes = metrics["classes"]
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.55 * len(classes)
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for row in range(len(classes)):
        for column in range(len(classes)):
            axis.text(column, row, int(matrix[row, column]), ha="center", va="center",
                      color="white" if shares[row, column] > 0.5 else "black", fontsize=8)
    axis.set_title(title or f"top-1 {metrics['top1']:.1%}, macro-F1 {metrics['macro_f1']:.3f}")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


def evaluate_checkpoint(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The metrics of :func:`evaluate_with_predictions` (which takes the same arguments)."""
    return evaluate_with_predictions(*args, **kwargs)[0]


def evaluate_with_predictions(
    checkpoint: str | Path,
    data: str | Path,
    split: str | Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    views: int = 1,
    precision: str = "auto",
) -> tuple[dict[str, Any], LoaderPredictions]:
    """Score a checkpoint on a dataset, or on the test side of a saved split of it, averaging
    over ``views`` symmetries of each image (:func:`score_predictions`); returns the metrics and
    the predictions they score.

    Unreadable images are skipped and listed under ``skipped``; classes the checkpoint does not
    know are an error. The probabilities use the checkpoint's temperature (1 where it has none).
    ``precision``: auto (bf16 where the device runs it natively), bf16 or fp32.
    """
    check_views(views)  # before loading anything
    run_device = pick_device(device)
    model, meta = load_checkpoint(checkpoint, map_location=run_device)
    index = index_dataset(data)
    foreign = sorted(set(index.classes) - set(meta.classes))
    if foreign:
        raise HnfError(
            f"{data}: class(es) {', '.join(foreign)} not among the checkpoint's classes ({', '.join(meta.classes)})"
        )
    report = inspect_dataset(data, detect_bands=False)
    readable = {record.path for record in report.images}
    samples = [s for s in index.samples if index.relative(s.path) in readable]
    if split is not None:
        wanted = set(load_split(split).folds[0].test)
        samples = [s for s in samples if index.relative(s.path) in wanted]
    if not samples:
        raise HnfError(f"{data}: no readable images to evaluate")
    prep = meta.preprocessing
    dataset = MicrographDataset(samples, meta.classes, build_eval_transform(prep.img_size, prep.normalisation, prep.mean, prep.std), crop_band=prep.crop_band, resize=prep.resize,
                                pixel_size_nm=prep.pixel_size_nm)
    predictions = predict_loader(model, DataLoader(dataset, batch_size=batch_size), run_device,
                                 autocast_dtype(precision, run_device), views, meta.temperature)
    metrics = score_predictions(predictions, meta.classes)
    metrics.update(loss=predictions.loss, checkpoint=str(checkpoint), data=str(data),
                   skipped=[{"path": p.path, "reason": p.reason} for p in report.unreadable])
    return metrics, predictions
