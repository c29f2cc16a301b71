"""Linear probe: a logistic regression on a frozen pretrained network's pooled features.

The strong and cheap baseline of transfer learning (Kornblith et al., CVPR 2019): the network's
pooled features phi(x) (timm's ``forward_head(..., pre_logits=True)``; 1280 for EfficientNet-Lite0)
of the centre crops of the training side, standardised, fit a multinomial logistic regression

    p(y | x) = softmax(W (phi(x) - mu) / sigma + b)

with L2 strength 1/C; C is chosen from :data:`C_GRID` by top-1 (then log-loss) on the validation
side, never the test side. The fitted map is folded into the network's own linear classifier,
``W' = W / sigma``, ``b' = b - W' mu``, so the result is an ordinary checkpoint: ``predict``,
``serve``, ``evaluate`` and ONNX export use it like any other. Like a trained run it is then
calibrated and given its unknown-input detector (:func:`hnf.trust.fit_run_trust`: temperature on
the validation side, detector on the training side).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from torch.utils.data import DataLoader

from hnf.atomic import atomic_write_json, atomic_write_text
from hnf.data.torch_dataset import MicrographDataset
from hnf.data.transforms import build_eval_transform
from hnf.errors import HnfError
from hnf.models.factory import build_classifier
from hnf.train.config import TrainConfig
from hnf.train.checkpoint import CheckpointMeta, Preprocessing, save_checkpoint
from hnf.train.data import prepare_run_data
from hnf.train.device import autocast_dtype, pick_device
from hnf.train.evaluate import plot_confusion, predict_loader, score_predictions
from hnf.trust import fit_run_trust

if TYPE_CHECKING:
    from hnf.train.loop import RunResult

C_GRID = (0.01, 0.1, 1.0, 10.0)


@torch.no_grad()
def pooled_features(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                    amp: torch.dtype | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) pooled features and (N,) labels of every image of ``loader``."""
    model.eval()
    features, labels = [], []
    for images, targets in loader:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pooled = model.forward_head(model.forward_features(images.to(device)), pre_logits=True)
        features.append(pooled.float().cpu().numpy())
        labels.append(targets.numpy())
    return np.concatenate(features), np.concatenate(labels)


def fit_logistic(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 classes: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit on standardised features with each C of :data:`C_GRID`, keep the best on validation;
    return W (classes, F) and b (classes,) for the raw features, and the selection record."""
    mu = train_x.mean(0)
    sigma = train_x.std(0) + 1e-6
    scaled_train, scaled_val = (train_x - mu) / sigma, (val_x - mu) / sigma
    trials = []
    for c in C_GRID:
        fit = LogisticRegression(C=c, max_iter=2000).fit(scaled_train, train_y)
        probs = fit.predict_proba(scaled_val) if len(val_y) else np.zeros((0, classes))
        top1 = accuracy_score(val_y, probs.argmax(1)) if len(val_y) else 0.0
        loss = log_loss(val_y, probs, labels=list(range(classes))) if len(val_y) else 0.0
        trials.append({"C": c, "val_top1": float(top1), "val_loss": float(loss), "fit": fit})
    best = max(trials, key=lambda t: (t["val_top1"], -t["val_loss"]))
    fit = best["fit"]
    if len(fit.classes_) != classes:
        raise HnfError(f"the training side holds {len(fit.classes_)} of {classes} classes; a probe needs all")
    coef, intercept = fit.coef_, fit.intercept_
    if classes == 2:  # sklearn's binary model is one logit z for class 1: softmax([-z/2, z/2]) = sigmoid(z)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight = coef / sigma
    bias = intercept - weight @ mu
    record = {"chosen_C": best["C"], "trials": [{k: v for k, v in t.items() if k != "fit"} for t in trials]}
    return weight, bias, record


def fit_linear_probe(config: TrainConfig, say: Callable[..., None] = print) -> RunResult:
    """Fit the probe of a pretrained timm model as configured (a :class:`~hnf.train.loop.TrainConfig`
    with ``linear_probe=True``) and write a run folder like :func:`~hnf.train.loop.train` does."""
    from hnf.train.loop import RunResult, resolve_normalisation  # here: loop imports this module

    run_dir = Path(config.out)
    saved = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    if (run_dir / "checkpoint").exists() and (not saved.get("linear_probe") or (run_dir / "metrics.json").exists()):
        # an unfinished probe is fitted again (it is cheap); anything else is kept
        raise HnfError(f"{run_dir} already holds a run; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", asdict(config))
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    amp = autocast_dtype(config.precision, device)
    run = prepare_run_data(Path(config.data), Path(config.split) if config.split else None, run_dir, config.seed,
                           config.test_fraction, config.val_fraction, config.train_per_class)
    normalisation, mean, std = resolve_normalisation(config)
    model = build_classifier(config.model, len(run.classes), img_size=config.img_size, class_names=run.classes,
                             **config.model_overrides).to(device)
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not getattr(model, "pretrained_trunk", False) or not isinstance(classifier, torch.nn.Linear):
        raise HnfError(f"a linear probe needs a pretrained timm model with a linear classifier; {config.model} "
                       f"with {config.model_overrides} is not one (give it weights, e.g. --set weights=...)")
    transform = build_eval_transform(config.img_size, normalisation, mean, std)

    def loader(samples: list, cache: bool = False) -> DataLoader:
        dataset = MicrographDataset(samples, run.classes, transform, crop_band=config.crop_band, resize=config.resize,
                                    pixel_size_nm=config.pixel_size_nm, cache=cache)
        return DataLoader(dataset, batch_size=config.batch_size)

    start = time.perf_counter()
    train_loader, val_loader = loader(run.train, cache=True), loader(run.val, cache=True)  # decoded once, read twice
    train_x, train_y = pooled_features(model, train_loader, device, amp)
    val_x, val_y = pooled_features(model, val_loader, device, amp)
    weight, bias, record = fit_logistic(train_x, train_y, val_x, val_y, len(run.classes))
    with torch.no_grad():
        classifier.weight.copy_(torch.as_tensor(weight, dtype=classifier.weight.dtype))
        classifier.bias.copy_(torch.as_tensor(bias, dtype=classifier.bias.dtype))
    seconds = time.perf_counter() - start
    say(f"linear probe: C = {record['chosen_C']} chosen on {len(val_y)} validation images")
    atomic_write_text(run_dir / "metrics.jsonl", json.dumps({"epoch": 1, "step": 0, **record, "seconds": seconds}) + "\n")
    meta = CheckpointMeta(model=config.model, classes=run.classes, model_overrides=config.model_overrides,
                          preprocessing=Preprocessing(config.img_size, config.resize, mean, std, 1, config.crop_band,
                                                      normalisation, config.pixel_size_nm), epoch=1)
    save_checkpoint(run_dir / "checkpoint", model, meta)
    trust = fit_run_trust(model, train_loader.dataset, val_loader, device, amp, run_dir / "checkpoint",
                          config.batch_size, say)
    test = predict_loader(model, loader(run.test), device, amp, config.tta_views, trust.temperature)
    metrics = score_predictions(test, run.classes)
    metrics.update(split="test", test_loss=test.loss, model=config.model, epochs=1, train_seconds=seconds,
                   train_images_per_s=len(train_y) / max(seconds, 1e-9), checkpoint="checkpoint",
                   probe=record)
    atomic_write_json(run_dir / "metrics.json", metrics)
    plot_confusion(metrics, run_dir / "confusion.png")
    return RunResult(run_dir, metrics, 1, False, seconds, len(train_y) / max(seconds, 1e-9))
