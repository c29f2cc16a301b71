"""Answers a lab can trust: calibrated confidence, abstention and unknown inputs.

**Calibration** (temperature scaling). With logits z(x) the calibrated probabilities are
``p_T(y | x) = softmax(z(x) / T)_y``; T > 0 minimises the validation side's negative
log-likelihood

    NLL(T) = -1/N sum_i log softmax(z_i / T)_{y_i}
           = 1/N sum_i [ logsumexp_c(b z_ic) - b z_{i y_i} ],   b = 1/T.

In b the NLL is convex (a log-sum-exp of functions linear in b, minus a linear function), so a
golden-section search over b in [1/T_MAX, 1/T_MIN] finds its minimum (:func:`fit_temperature`).
T > 1 softens an over-confident model, T < 1 sharpens an under-confident one; argmax, and with it
top-1, never changes.

**Expected calibration error** (:func:`expected_calibration_error`), M = 15 equal-width bins:
image i has confidence c_i = max_y p(y | x_i) and is correct when argmax_y p(y | x_i) = y_i; bin m
holds the images with c_i in ((m - 1)/M, m/M] (c_i = 0 in the first), and

    ECE = sum_m |B_m| / N * | acc(B_m) - conf(B_m) |

with acc(B_m) the share of correct images and conf(B_m) their mean confidence.

**Abstention.** Below a minimum confidence P a prediction abstains (``c_i < P``); the coverage is
the share of images that do not. The risk-coverage curve (:func:`risk_coverage`) keeps the
ceil(c N) most confident images at coverage c and reports their accuracy.

**Unknown inputs** (out-of-distribution scores from the model's embedding e(x), the vector its
classifier reads, :func:`logits_and_embedding`); higher means less like the training images:

* Mahalanobis distance to the nearest class mean with a shared covariance:
  ``s_M(x) = min_c (e - mu_c)^T S^-1 (e - mu_c)``, mu_c the mean training embedding of class c,
  S the Ledoit-Wolf shrinkage estimate ``(1 - a) S_hat + a tr(S_hat)/d I`` of the within-class
  covariance ``S_hat = 1/N sum_i (e_i - mu_{y_i})(e_i - mu_{y_i})^T`` (a in [0, 1] chosen by the
  Ledoit-Wolf formula, so S stays invertible with fewer images than dimensions).
* Energy: ``s_E(x) = -logsumexp_c z_c(x)`` of the raw logits (T = 1).
* k-nearest neighbours (Sun et al., ICML 2022): ``s_K(x) = 1 - cos(e, b_(k))``, b_(k) the k-th
  most similar of the training embeddings kept in a bank (L2-normalised, at most
  :data:`KNN_BANK`, seeded), k = :data:`KNN_K` (fixed a priori); no class or covariance model.

All are fitted at the end of training: the class means, covariance and bank on the training side
(images under the evaluation transform), the threshold of each score at the ``ACCEPT`` = 95th
percentile of the validation side's scores, so 95% of validation images are accepted and an
image is ``unknown`` when its score lies above it. :data:`DEFAULT_OOD_METHOD` names the score the
flag uses, chosen by measurement (``bench/bench_ood.py``, BENCHMARKS.md "Trust").

**Class features for new classes.** The same pass over the training side keeps, for up to
:data:`REPLAY_PER_CLASS` training images per class, the vector h(x) the final linear layer reads
(:func:`final_linear`): a replay bank that lets ``hnf classes add`` fit a new class's row against
the old classes without their images (:mod:`hnf.classes`).

The fitted values live in the checkpoint: ``temperature`` and ``ood`` (method, thresholds,
shrinkage) in ``checkpoint.json``, the class means, the precision matrix S^-1 and the replay bank
in ``ood-<sha>.safetensors`` beside it (:func:`save_trust`, :func:`load_trust`). Checkpoints
without them load with T = 1 and no unknown-input detector (``unknown`` and ``ood_score`` null).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hnf.errors import HnfError

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error."""
COVERAGES = (1.0, 0.95, 0.9, 0.8)
"""Coverages the risk-coverage report lists (``risk_coverage`` in metrics)."""
ACCEPT = 0.95
"""Share of validation images the unknown-input thresholds accept."""
OOD_METHODS = ("mahalanobis", "energy", "knn")
KNN_K = 5
"""The neighbour whose cosine distance is the k-NN score (fixed before measuring)."""
KNN_BANK = 2048
"""At most this many training embeddings in the k-NN bank (a seeded subsample beyond it)."""
DEFAULT_OOD_METHOD = "mahalanobis"
"""The score behind ``unknown`` (measured against energy: BENCHMARKS.md "Trust")."""
T_MIN, T_MAX = 0.05, 20.0
"""Search range of the temperature."""
OOD_FILE_PREFIX = "ood-"
REPLAY_PER_CLASS = 64
"""Training images per class whose classifier input h(x) the checkpoint keeps (:class:`Replay`)."""


class TrustError(HnfError, ValueError):
    """A calibration or unknown-input request that cannot be met (bad value, no embedding)."""


# -- calibration ----------------------------------------------------------------------------------


def temperature_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """NLL(T) = -1/N sum_i log softmax(z_i / T)_{y_i} (float64)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), np.asarray(labels, dtype=int)]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The T in [T_MIN, T_MAX] minimising NLL(T) (golden-section search over b = 1/T, where the
    NLL is convex); 1.0 for an empty set."""
    if len(labels) == 0:
        return 1.0
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    low, high = 1.0 / T_MAX, 1.0 / T_MIN
    loss = lambda b: temperature_nll(logits, labels, 1.0 / b)  # noqa: E731
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(iterations):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(1.0 / ((low + high) / 2.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(z / T) along the last axis (float64)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return scaled / scaled.sum(axis=-1, keepdims=True)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin m: ``low``, ``high``, ``count`` |B_m|, ``accuracy`` acc(B_m) and
    ``confidence`` conf(B_m) (None for an empty bin); see the module docstring."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (m-1)/M < c <= m/M
    rows = []
    for m in range(bins):
        inside = index == m
        count = int(inside.sum())
        rows.append({"low": m / bins, "high": (m + 1) / bins, "count": count,
                     "accuracy": float(correct[inside].mean()) if count else None,
                     "confidence": float(confidence[inside].mean()) if count else None})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = sum_m |B_m|/N |acc(B_m) - conf(B_m)| over ``bins`` equal-width confidence bins."""
    total = len(labels)
    if total == 0:
        return 0.0
    return float(sum(row["count"] / total * abs(row["accuracy"] - row["confidence"])
                     for row in reliability_bins(probs, labels, bins) if row["count"]))


# -- abstention -----------------------------------------------------------------------------------


def check_min_confidence(value: float | None) -> float | None:
    """``value`` itself when it is None or in [0, 1]; otherwise a :class:`TrustError`."""
    if value is not None and not 0.0 <= value <= 1.0:  # NaN fails the comparison too
        raise TrustError(f"--min-confidence must be a probability in [0, 1], got {value}")
    return value


def risk_coverage(probs: np.ndarray, labels: np.ndarray, coverages: tuple[float, ...] = COVERAGES
                  ) -> list[dict[str, float]]:
    """``[{coverage, accuracy, images}]``: accuracy of the ceil(c N) most confident images
    (ties broken by order) at each coverage c."""
    order = np.argsort(-probs.max(axis=1), kind="stable")
    correct = (probs.argmax(axis=1) == np.asarray(labels))[order]
    rows = []
    for coverage in coverages:
        kept = max(1, math.ceil(coverage * len(order) - 1e-9)) if len(order) else 0
        rows.append({"coverage": float(coverage), "accuracy": float(correct[:kept].mean()) if kept else 0.0,
                     "images": int(kept)})
    return rows


def calibration_metrics(uncalibrated: np.ndarray, calibrated: np.ndarray, labels: np.ndarray,
                        temperature: float) -> dict[str, Any]:
    """``ece``, ``ece_uncalibrated``, ``temperature``, ``risk_coverage`` (of the calibrated
    probabilities) and ``reliability`` (their bins) for metrics.json and ``hnf evaluate``."""
    return {
        "temperature": float(temperature),
        "ece": expected_calibration_error(calibrated, labels),
        "ece_uncalibrated": expected_calibration_error(uncalibrated, labels),
        "risk_coverage": risk_coverage(calibrated, labels),
        "reliability": reliability_bins(calibrated, labels),
    }


def _png(figure: Any) -> bytes:
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_reliability(uncalibrated: np.ndarray, calibrated: np.ndarray, labels: np.ndarray, temperature: float,
                     path: str | Path) -> Path:
    """Reliability diagram (accuracy against confidence per bin, before and after calibration,
    the diagonal being perfect calibration) as a PNG."""
    from matplotlib.figure import Figure

    from hnf.atomic import atomic_write_bytes

    figure = Figure(figsize=(5.5, 5))
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for probs, name, style in ((uncalibrated, "uncalibrated", "s-"), (calibrated, f"T = {temperature:.2f}", "o-")):
        rows = [r for r in reliability_bins(probs, labels) if r["count"]]
        ece = expected_calibration_error(probs, labels)
        axis.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], style,
                  label=f"{name} (ECE {ece:.3f})")
    axis.set(xlabel="confidence (mean per bin)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02),
             title=f"reliability, {ECE_BINS} bins, {len(labels)} images")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    return atomic_write_bytes(path, _png(figure))


def plot_risk_coverage(probs: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Accuracy of the most confident images against the share kept, as a PNG."""
    from matplotlib.figure import Figure

    from hnf.atomic import atomic_write_bytes

    grid = tuple(np.linspace(0.05, 1.0, 96))
    curve = risk_coverage(probs, labels, grid)
    figure = Figure(figsize=(5.5, 4.5))
    axis = figure.subplots()
    axis.plot([r["coverage"] for r in curve], [r["accuracy"] for r in curve], "-")
    for row in risk_coverage(probs, labels):
        axis.plot(row["coverage"], row["accuracy"], "o", color="black")
        axis.annotate(f"{row['accuracy']:.1%}", (row["coverage"], row["accuracy"]), textcoords="offset points",
                      xytext=(-10, 8), fontsize=8)
    axis.set(xlabel="coverage (share of images answered, most confident first)", ylabel="accuracy",
             xlim=(0, 1.02), title=f"risk-coverage, {len(labels)} images")
    axis.grid(alpha=0.3)
    return atomic_write_bytes(path, _png(figure))


# -- embeddings -----------------------------------------------------------------------------------


def logits_and_embedding(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Logits (B, classes) and the embedding (B, d) the classifier reads, in one forward pass.

    HNF and HNF-LLM models: ``model(x, return_explain=True)`` and the backbone's
    ``HNFFeatures.embedding``; timm models: ``forward_features`` then ``forward_head`` with and
    without ``pre_logits`` (the pooled vector and the logits)."""
    from hnf.models.hnf import HNF
    from hnf.models.hnf_llm import HNFLLM

    if isinstance(model, (HNF, HNFLLM)):
        logits, features = model(images, return_explain=True)
        return logits, features.embedding
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        features = model.forward_features(images)
        return model.forward_head(features), model.forward_head(features, pre_logits=True).flatten(1)
    raise TrustError(f"{type(model).__name__} gives no embedding (expected an hnf model or a timm model "
                     "with forward_features and forward_head)")


def final_linear(model: nn.Module) -> nn.Linear:
    """The linear layer that makes a model's logits: the last layer of the head of an HNF model
    (``head[-1]``) and of an HNF-LLM model (``classifier.head[-1]``), a timm model's
    ``get_classifier()``. Its input is the classifier feature h(x) (B, d_h)."""
    from hnf.models.hnf import HNF
    from hnf.models.hnf_llm import HNFLLM

    if isinstance(model, HNFLLM):
        layer = model.classifier.head[-1]
    elif isinstance(model, HNF):
        layer = model.head[-1]
    elif hasattr(model, "get_classifier"):
        layer = model.get_classifier()
    else:
        layer = None
    if not isinstance(layer, nn.Linear):
        raise TrustError(f"{type(model).__name__} has no final linear classifier (found {type(layer).__name__})")
    return layer


def logits_embedding_and_head_input(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`logits_and_embedding` and the final linear layer's input h (B, d_h), one pass."""
    captured: list[Tensor] = []
    hook = final_linear(model).register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    try:
        logits, embedding = logits_and_embedding(model, images)
    finally:
        hook.remove()
    return logits, embedding, captured[0].flatten(1)


@dataclass
class Collected:
    """What :func:`collect` returns: logits (N, C), embeddings (N, d), labels (N,), and with
    ``head_inputs=True`` the final linear layer's inputs (N, d_h); float arrays."""

    logits: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    head_inputs: np.ndarray | None = None


@torch.no_grad()
def collect(model: nn.Module, loader: Any, device: torch.device, amp_dtype: torch.dtype | None = None,
            head_inputs: bool = False) -> Collected:
    """Logits, embeddings and labels (and the classifier inputs) of every image of ``loader``
    (model in eval mode)."""
    model.eval()
    logits, embeddings, labels, inputs = [], [], [], []
    for images, targets in loader:
        context = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
        with context:
            if head_inputs:
                z, e, h = logits_embedding_and_head_input(model, images.to(device, non_blocking=True))
                inputs.append(h.float().cpu().numpy())
            else:
                z, e = logits_and_embedding(model, images.to(device, non_blocking=True))
        logits.append(z.float().cpu().numpy())
        embeddings.append(e.float().cpu().numpy())
        labels.append(np.asarray(targets))
    if not labels:
        empty = np.zeros((0, 0), np.float32)
        return Collected(empty, empty, np.zeros(0, int), empty if head_inputs else None)
    return Collected(np.concatenate(logits), np.concatenate(embeddings), np.concatenate(labels),
                     np.concatenate(inputs) if head_inputs else None)


@dataclass
class Replay:
    """Classifier inputs h (N, d_h) of up to :data:`REPLAY_PER_CLASS` training images per class,
    with their class indices (N,): what ``hnf classes add`` fits a new class against."""

    features: np.ndarray
    labels: np.ndarray

    @classmethod
    def sample(cls, features: np.ndarray, labels: np.ndarray, per_class: int = REPLAY_PER_CLASS,
               seed: int = 0) -> Replay:
        """At most ``per_class`` rows of each class, drawn without replacement (seeded)."""
        rng = np.random.default_rng(seed)
        labels = np.asarray(labels, dtype=int)
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                               for c in sorted(set(labels.tolist()))]) if len(labels) else np.zeros(0, int)
        keep.sort()
        return cls(np.asarray(features, np.float32)[keep], labels[keep])

    def extended(self, features: np.ndarray, label: int, per_class: int = REPLAY_PER_CLASS) -> Replay:
        """This bank with up to ``per_class`` rows of ``features`` added as class ``label``."""
        rows = np.asarray(features, np.float32)[:per_class]
        return Replay(np.concatenate([self.features, rows]),
                      np.concatenate([self.labels, np.full(len(rows), label, dtype=self.labels.dtype)]))


# -- unknown inputs -------------------------------------------------------------------------------


def energy_score(logits: np.ndarray) -> np.ndarray:
    """s_E = -logsumexp_c z_c (float64; higher: less like the training images)."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1)
    return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


@dataclass
class OODStats:
    """Fitted unknown-input detector (module docstring): class means (K, d) of the classes with
    training images, the precision matrix S^-1 (d, d), the Ledoit-Wolf shrinkage a, the
    thresholds of every score, the k-NN bank and the method the ``unknown`` flag uses."""

    means: np.ndarray
    precision: np.ndarray
    shrinkage: float
    thresholds: dict[str, float]
    method: str = DEFAULT_OOD_METHOD
    accept: float = ACCEPT
    train_images: int = 0
    val_images: int = 0
    bank: np.ndarray | None = None  # (M, d) unit-norm training embeddings of the k-NN score
    knn_k: int = KNN_K

    @property
    def methods(self) -> list[str]:
        """The scores this detector computes (``knn`` only with a bank)."""
        return [m for m in OOD_METHODS if m != "knn" or self.bank is not None]

    def knn(self, embeddings: np.ndarray) -> np.ndarray:
        """s_K = 1 - cos(e, b_(k)), the k-th largest cosine similarity to the bank, per row."""
        if self.bank is None:
            raise TrustError("this detector has no k-NN bank (fitted by an older hnf)")
        e = np.asarray(embeddings, dtype=np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        similarity = e @ self.bank.astype(np.float64).T
        k = min(self.knn_k, similarity.shape[1])
        return 1.0 - np.partition(similarity, -k, axis=1)[:, -k]

    def mahalanobis(self, embeddings: np.ndarray) -> np.ndarray:
        """s_M = min_c (e - mu_c)^T S^-1 (e - mu_c), per row of ``embeddings`` (N, d)."""
        e = np.asarray(embeddings, dtype=np.float64)
        mu, p = self.means.astype(np.float64), self.precision.astype(np.float64)
        ep = e @ p
        distances = (ep * e).sum(1)[:, None] - 2.0 * ep @ mu.T + ((mu @ p) * mu).sum(1)[None, :]
        return np.maximum(distances.min(axis=1), 0.0)

    def scores(self, embeddings: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Every score of :attr:`methods`, ``{"mahalanobis": (N,), "energy": (N,), "knn": (N,)}``."""
        return {m: self.score(embeddings, logits, m) for m in self.methods}

    def score(self, embeddings: np.ndarray, logits: np.ndarray, method: str | None = None) -> np.ndarray:
        """The score of ``method`` (default: the flag's)."""
        method = method or self.method
        if method == "mahalanobis":
            return self.mahalanobis(embeddings)
        if method == "knn":
            return self.knn(embeddings)
        return energy_score(logits)

    def unknown(self, scores: np.ndarray, method: str | None = None) -> np.ndarray:
        """``score > threshold`` of ``method`` (default: the flag's)."""
        return np.asarray(scores) > self.thresholds[method or self.method]


def fit_ood(train_embeddings: np.ndarray, train_labels: np.ndarray, val_embeddings: np.ndarray,
            val_logits: np.ndarray, method: str = DEFAULT_OOD_METHOD, accept: float = ACCEPT) -> OODStats:
    """Class means and shrunk shared covariance on the training side, each score's threshold at
    the ``accept`` quantile of its values on ``val_embeddings`` / ``val_logits`` (the validation
    side; the caller passes the training side's where there is none)."""
    from sklearn.covariance import ledoit_wolf

    if method not in OOD_METHODS:
        raise TrustError(f"unknown-input method must be one of {', '.join(OOD_METHODS)}, got {method!r}")
    e = np.asarray(train_embeddings, dtype=np.float64)
    labels = np.asarray(train_labels, dtype=int)
    if len(e) < 2:
        raise TrustError(f"fitting the unknown-input detector needs at least 2 training images, got {len(e)}")
    present = sorted(set(labels.tolist()))
    means = np.stack([e[labels == c].mean(axis=0) for c in present])
    centred = e - means[np.searchsorted(present, labels)]
    covariance, shrinkage = ledoit_wolf(centred, assume_centered=True)
    if not np.trace(covariance) > 0:  # one image per class: no spread to measure; Euclidean distance
        covariance, shrinkage = np.eye(e.shape[1]), 1.0
    precision = np.linalg.pinv(covariance, hermitian=True)
    keep = np.sort(np.random.default_rng(0).permutation(len(e))[:KNN_BANK])
    bank = e[keep] / np.maximum(np.linalg.norm(e[keep], axis=1, keepdims=True), 1e-12)
    stats = OODStats(means.astype(np.float32), precision.astype(np.float32), float(shrinkage), {}, method, accept,
                     len(e), len(val_embeddings), bank.astype(np.float32))
    if not len(val_embeddings):
        raise TrustError("the unknown-input thresholds need images to set them on, got none")
    for name, values in stats.scores(val_embeddings, val_logits).items():
        stats.thresholds[name] = float(np.quantile(values, accept, method="higher"))
    return stats


# -- the checkpoint's part ------------------------------------------------------------------------


@dataclass
class Trust:
    """What a checkpoint says about trusting its predictions: the temperature and, when fitted,
    the unknown-input detector."""

    temperature: float = 1.0
    ood: OODStats | None = None
    notes: list[str] = field(default_factory=list)
    replay: Replay | None = None


def save_trust(directory: str | Path, temperature: float, ood: OODStats | None, replay: Replay | None = None) -> Path:
    """Record the temperature and detector in a checkpoint folder: the means, precision and
    replay bank in ``ood-<sha16>.safetensors``, the rest in ``checkpoint.json`` (both written
    atomically, the JSON last; a previous detector file is removed after it)."""
    from safetensors.torch import save

    from hnf.atomic import atomic_write_bytes, atomic_write_json
    from hnf.train.checkpoint import META_FILE, read_meta

    directory, meta = read_meta(directory)
    old = (meta.ood or {}).get("file")
    meta.temperature = float(temperature)
    meta.ood = None
    if ood is not None:
        tensors = {"means": torch.from_numpy(np.ascontiguousarray(ood.means, dtype=np.float32)),
                   "precision": torch.from_numpy(np.ascontiguousarray(ood.precision, dtype=np.float32))}
        if ood.bank is not None:
            tensors["bank"] = torch.from_numpy(np.ascontiguousarray(ood.bank, dtype=np.float32))
        if replay is not None:
            tensors["replay_features"] = torch.from_numpy(np.ascontiguousarray(replay.features, dtype=np.float32))
            tensors["replay_labels"] = torch.from_numpy(np.ascontiguousarray(replay.labels, dtype=np.int64))
        payload = save(tensors)
        digest = hashlib.sha256(payload).hexdigest()
        name = f"{OOD_FILE_PREFIX}{digest[:16]}.safetensors"
        atomic_write_bytes(directory / name, payload)
        meta.ood = {"file": name, "sha256": digest, "method": ood.method, "thresholds": dict(ood.thresholds),
                    "accept": ood.accept, "shrinkage": ood.shrinkage, "train_images": ood.train_images,
                    "val_images": ood.val_images, "knn_k": ood.knn_k}
    atomic_write_json(directory / META_FILE, meta.to_json())
    if old and old != (meta.ood or {}).get("file"):
        (directory / old).unlink(missing_ok=True)
    return directory


def load_trust(directory: str | Path, meta: Any) -> Trust:
    """The :class:`Trust` of a checkpoint folder (T = 1 and no detector for checkpoints
    without them); a missing or altered detector file is a ``CheckpointError`` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from hnf.train.checkpoint import CheckpointError

    temperature = float(getattr(meta, "temperature", 1.0) or 1.0)
    record = getattr(meta, "ood", None)
    if not record:
        return Trust(temperature)
    path = Path(directory) / record["file"]
    if not path.is_file():
        raise CheckpointError(f"{path}: unknown-input statistics file missing")
    if hashlib.sha256(path.read_bytes()).hexdigest() != record["sha256"]:
        raise CheckpointError(f"{path}: unknown-input statistics do not match checkpoint.json (SHA-256 differs)")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable unknown-input statistics ({err})") from None
    stats = OODStats(tensors["means"].numpy(), tensors["precision"].numpy(), float(record.get("shrinkage", 0.0)),
                     {k: float(v) for k, v in record["thresholds"].items()}, record.get("method", DEFAULT_OOD_METHOD),
                     float(record.get("accept", ACCEPT)), int(record.get("train_images", 0)),
                     int(record.get("val_images", 0)), tensors["bank"].numpy() if "bank" in tensors else None,
                     int(record.get("knn_k", KNN_K)))
    replay = (Replay(tensors["replay_features"].numpy(), tensors["replay_labels"].numpy())
              if "replay_features" in tensors else None)
    return Trust(temperature, stats, replay=replay)


def fit_run_trust(model: nn.Module, train_dataset: Any, val_loader: Any, device: torch.device,
                  amp_dtype: torch.dtype | None, checkpoint_dir: Path, batch_size: int = 32,
                  say: Callable[..., None] = print) -> Trust:
    """At the end of training: the temperature on the validation side, the detector's means
    and covariance on the training side (its images under the validation loader's evaluation
    transform, not augmented) and its thresholds on the validation side; saved into the
    checkpoint (:func:`save_trust`), with the replay bank of classifier inputs (:class:`Replay`)."""
    from torch.utils.data import DataLoader

    plain = copy.copy(train_dataset)  # shares the decoded-image cache; evaluation transform
    plain.transform = val_loader.dataset.transform
    train = collect(model, DataLoader(plain, batch_size=batch_size), device, amp_dtype, head_inputs=True)
    val = collect(model, val_loader, device, amp_dtype)
    trust = Trust(fit_temperature(val.logits, val.labels) if len(val.labels) else 1.0)
    if not len(val.labels):
        trust.notes.append("no validation images: temperature 1, unknown-input thresholds from the training side")
    reference = val if len(val.labels) else train
    trust.ood = fit_ood(train.embeddings, train.labels, reference.embeddings, reference.logits)
    trust.replay = Replay.sample(train.head_inputs, train.labels)
    save_trust(checkpoint_dir, trust.temperature, trust.ood, trust.replay)
    say(f"calibration: temperature {trust.temperature:.3f} (validation NLL "
        f"{temperature_nll(val.logits, val.labels, 1.0):.3f} -> {temperature_nll(val.logits, val.labels, trust.temperature):.3f}); "
        f"unknown inputs: {trust.ood.method} threshold {trust.ood.thresholds[trust.ood.method]:.4g} "
        f"({ACCEPT:.0%} of validation accepted)" if len(val.labels) else f"calibration: {trust.notes[0]}")
    return trust
