"""Predict with a trained checkpoint: load it once, prepare images exactly as training did, batch.

Preprocessing is the evaluation pipeline of training (DESIGN.md section 4), driven by the
checkpoint's ``preprocessing`` record: decode with :func:`hnf.data.reading.read_micrograph`
(information band found and cut when ``crop_band``), resize the short side to ``resize`` with
:func:`hnf.data.torch_dataset.resize_short_side` (or, with ``pixel_size_nm`` and a stated pixel
size, resample to that scale: :func:`hnf.data.torch_dataset.resize_for_model`), centre crop ``img_size``, scale to [0, 1] and
normalise with the checkpoint's ``mean`` and ``std`` (the grey channel repeated when the model
takes ``in_chans`` > 1).

:class:`Predictor` is safe to share between threads: every call works on its own tensors and the
model's forward pass runs under a lock, so concurrent callers never see each other's results.
An unreadable image gives a :class:`Prediction` with ``error`` set; the others go on.

Trust (:mod:`hnf.trust`): probabilities are softmax(z / T) with the checkpoint's temperature T;
with ``min_confidence`` P a row whose top probability is below P has ``abstain`` true; with the
checkpoint's unknown-input detector each row has ``ood_score`` (of the image as given, the first
view) and ``unknown`` (the score above the detector's threshold), both None without one.
"""

from __future__ import annotations

import glob
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hnf.data.band import Band
from hnf.data.reading import is_image_path, read_micrograph
from hnf.data.metadata import Metadata
from hnf.data.torch_dataset import resize_for_model, resize_short_side
from hnf.data.transforms import normalise
from hnf.train.device import pick_device
from hnf.errors import HnfError, ImageReadError
from hnf.train.checkpoint import CheckpointMeta, Preprocessing, load_checkpoint
from hnf.trust import Trust, check_min_confidence, load_trust, logits_and_embedding
from hnf.tta import average_probabilities, check_views, dihedral_views

_GLOB_CHARS = set("*?[")


@dataclass
class Prepared:
    """One decoded image ready for the model: ``tensor`` (C, S, S) normalised, ``view`` the
    centre crop the model sees as float (S, S) in [0, 1], the band-cut grey image (dropped by
    ``predict_files`` unless explaining), the file's size, mode and band, and its metadata."""

    tensor: torch.Tensor
    view: np.ndarray
    grey: np.ndarray | None
    width: int
    height: int
    mode: str
    band: Band | None
    metadata: Metadata | None = None


@dataclass
class Prediction:
    """The result for one image; ``error`` is set (and ``top_k`` empty) when it could not be read."""

    path: str
    top_k: list[dict[str, Any]] = field(default_factory=list)
    probs: np.ndarray | None = None
    band: Band | None = None
    error: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    explanation: Any = None
    prepared: Prepared | None = None
    pixel_size_m: float | None = None
    field_of_view_m: tuple[float, float] | None = None  # metres: width, height of the rows above the band
    abstain: bool | None = None  # top probability below the minimum confidence (None: not predicted)
    unknown: bool | None = None  # unknown-input score above the threshold (None: no detector)
    ood_score: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The row written by ``hnf predict --out F.json``: path, top_k, abstain, unknown,
        ood_score, band, pixel_size_m, field_of_view_m (``[width, height]`` in metres, or null),
        error."""
        return {
            "path": self.path,
            "top_k": [{"class": e["class"], "prob": e["prob"]} for e in self.top_k],
            "abstain": self.abstain,
            "unknown": self.unknown,
            "ood_score": self.ood_score,
            "band": self.band.as_dict() if self.band is not None else None,
            "pixel_size_m": self.pixel_size_m,
            "field_of_view_m": list(self.field_of_view_m) if self.field_of_view_m is not None else None,
            "error": self.error,
        }


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder of ``hnf train`` holding ``checkpoint/``."""
    path = Path(path)
    nested = path / "checkpoint"
    if not (path / "checkpoint.json").exists() and (nested / "checkpoint.json").exists():
        return nested
    return path


def collect_inputs(items: Sequence[str | Path]) -> tuple[list[Path], list[Prediction]]:
    """Expand files, folders (recursively: files with an image extension) and glob patterns.

    Returns the image paths in order (duplicates dropped) and an error row for each item that
    names nothing (missing file, empty folder, pattern without matches).
    """
    paths: list[Path] = []
    problems: list[Prediction] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p))
            if not found:
                problems.append(Prediction(text, error=f"{text}: folder holds no image files"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif _GLOB_CHARS & set(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True))
            files = [p for p in found if p.is_file() and is_image_path(p)]
            for p in found:
                if p.is_dir():
                    files.extend(sorted(q for q in p.rglob("*") if q.is_file() and is_image_path(q)))
            if not files:
                problems.append(Prediction(text, error=f"{text}: no image files match this pattern"))
            for p in files:
                add(p)
        else:
            problems.append(Prediction(text, error=f"{text}: no such file or folder"))
    return paths, problems


def top_k_entries(probs: np.ndarray, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """``[{"class", "prob"}]`` of the ``k`` most probable classes, most probable first."""
    order = np.argsort(-probs, kind="stable")[: max(1, min(k, len(classes)))]
    return [{"class": classes[i], "prob": float(probs[i])} for i in order]


def prepare_grey(grey: np.ndarray, pre: Preprocessing, metadata: Metadata | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The evaluation pipeline of training for a band-cut grey image in [0, 1]: short side to
    ``pre.resize`` (resampled to ``pre.pixel_size_nm`` when the ``metadata`` states a pixel size),
    centre crop ``pre.img_size``, normalised as in training, channels repeated to ``in_chans``.
    Returns the model input (C, S, S) and the crop in [0, 1] (S, S)."""
    image = resize_for_model(grey, pre.resize, pre.pixel_size_nm, metadata and metadata.pixel_size_m,
                             metadata and metadata.pixel_height_m)
    size = pre.img_size
    if min(image.shape[1:]) < size:  # a resize below the crop size: grow to the crop size
        image = resize_short_side(image[0].float().numpy() / 255.0, size)
    _, height, width = image.shape
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    crop = image[:, top : top + size, left : left + size].float() / 255.0
    tensor = normalise(crop, pre.normalisation, pre.mean, pre.std)
    if pre.in_chans > 1:
        tensor = tensor.expand(pre.in_chans, -1, -1).contiguous()
    return tensor, crop[0].numpy()


class Predictor:
    """A model and its checkpoint metadata, ready to classify micrographs."""

    def __init__(self, model: torch.nn.Module, meta: CheckpointMeta, device: str | torch.device = "cpu",
                 views: int = 1, trust: Trust | None = None) -> None:
        """``device``: auto, cpu, cuda, cuda:N (:func:`hnf.train.device.pick_device`); ``views``:
        average each prediction over 1, 4 or 8 symmetries of the image (:mod:`hnf.tta`);
        ``trust``: temperature and unknown-input detector (default: the meta's temperature, no
        detector)."""
        check_views(views)
        self.trust = trust or Trust(float(meta.temperature))
        self.views = views
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.classes = list(meta.classes)
        self.pre = meta.preprocessing
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", views: int = 1) -> Predictor:
        """Load a checkpoint folder (safetensors + JSON; errors name the problem)."""
        device = pick_device(device) if isinstance(device, str) else device
        directory = resolve_checkpoint(path)
        model, meta = load_checkpoint(directory, map_location=device)
        return cls(model, meta, device, views, load_trust(directory, meta))

    @property
    def model_name(self) -> str:
        return self.meta.model

    # -- preprocessing -------------------------------------------------------------------------

    def prepare_grey(self, grey: np.ndarray, metadata: Metadata | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised model input (C, S, S) and the [0, 1] crop it came from, for a grey image
        (with the file's ``metadata``, for the checkpoint's common pixel size)."""
        return prepare_grey(grey, self.pre, metadata)

    def prepare(self, path: str | Path) -> Prepared:
        """Decode one file and prepare it; raises :class:`ImageReadError` naming the file."""
        micrograph = read_micrograph(path, crop_band=self.pre.crop_band)
        if micrograph.grey.shape[0] < 1 or micrograph.grey.shape[1] < 1:
            raise ImageReadError(path, "no image rows left above the information band")
        tensor, view = self.prepare_grey(micrograph.grey, micrograph.metadata)
        return Prepared(tensor, view, micrograph.grey, micrograph.width, micrograph.height,
                        micrograph.mode, micrograph.band, micrograph.metadata)

    # -- inference -----------------------------------------------------------------------------

    @torch.inference_mode()
    def scores(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated class probabilities (B, C) of a batch of prepared tensors, mean_v
        softmax(z_v / T) over the views, and the unknown-input scores (B,) of the images as
        given (None without a detector)."""
        images = dihedral_views(batch.to(self.device), self.views)
        with self._lock:
            if self.trust.ood is None:
                logits, embedding = self.model(images), None
            else:
                logits, embedding = logits_and_embedding(self.model, images)
        logits = logits.float()
        probs = average_probabilities(logits.view(self.views, batch.shape[0], -1) / self.trust.temperature)
        if embedding is None:
            return probs.cpu().numpy(), None
        first = slice(0, batch.shape[0])  # view 0 is the identity
        ood = self.trust.ood.score(embedding[first].float().cpu().numpy(), logits[first].cpu().numpy())
        return probs.cpu().numpy(), ood

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Calibrated class probabilities (B, C) of a batch, averaged over the views."""
        return self.scores(batch)[0]

    def explain(self, batch: torch.Tensor) -> tuple[np.ndarray, list[Any]]:
        """Probabilities and one :class:`hnf.explain.Explanation` per image of the batch."""
        from hnf.explain import explain_batch

        with self._lock:
            probs, explanations = explain_batch(self.model, batch.to(self.device))
        if self.views > 1 or self.trust.temperature != 1.0:  # the explanation is of the image as given;
            probs = self.probabilities(batch)  # the probabilities average the views, calibrated
        return probs, explanations

    def predict_prepared(self, items: Sequence[Prepared], names: Sequence[str], top_k: int = 5,
                         explain: bool = False, min_confidence: float | None = None) -> list[Prediction]:
        """Predictions for already prepared images (one forward pass for all of them; two when
        explaining with a detector); ``min_confidence`` P marks rows whose top probability is
        below P as abstaining."""
        check_min_confidence(min_confidence)
        if not items:
            return []
        batch = torch.stack([p.tensor for p in items])
        probs, ood = self.scores(batch) if not explain or self.trust.ood is not None else (None, None)
        if explain:
            explained, explanations = self.explain(batch)
            probs = explained if probs is None else probs
        else:
            explanations = [None] * len(items)
        rows = []
        for i, (name, item, row, explanation) in enumerate(zip(names, items, probs, explanations)):
            prediction = Prediction(str(name), top_k_entries(row, self.classes, top_k), row, item.band, None,
                                    item.width, item.height, item.mode, explanation, item,
                                    item.metadata.pixel_size_m if item.metadata else None,
                                    item.metadata.field_of_view_m(item.width, item.band.top if item.band else item.height)
                                    if item.metadata else None)
            prediction.abstain = bool(min_confidence is not None and float(row.max()) < min_confidence)
            if ood is not None:
                prediction.ood_score = float(ood[i])
                prediction.unknown = bool(self.trust.ood.unknown(ood[i : i + 1])[0])
            rows.append(prediction)
        return rows

    def predict_files(
        self,
        paths: Iterable[str | Path],
        top_k: int = 5,
        batch_size: int = 16,
        explain: bool = False,
        on_image: Callable[[Prediction], None] | None = None,
        workers: int = 2,
        min_confidence: float | None = None,
    ) -> Iterator[Prediction]:
        """Predict every file, in order, ``batch_size`` at a time; decoding runs in ``workers``
        threads while the model works. An unreadable file yields a row with ``error``; rows below
        ``min_confidence`` abstain (:meth:`predict_prepared`)."""
        check_min_confidence(min_confidence)
        paths = [Path(p) for p in paths]
        batch_size = max(1, batch_size)

        def load(path: Path) -> Prepared | str:
            try:
                prepared = self.prepare(path)
                if not explain:
                    prepared.grey = None  # the full image is only needed to draw explanations
                return prepared
            except ImageReadError as err:
                return str(err)
            except (HnfError, ValueError, OSError, MemoryError) as err:  # anything else a file can cause
                return f"{path}: cannot prepare image ({err})"

        chunks = deque(paths[i : i + batch_size] for i in range(0, len(paths), batch_size))
        ahead = max(1, workers)  # chunks decoded ahead of the model: memory stays bounded
        with ThreadPoolExecutor(max(1, workers)) as pool:
            pending: deque = deque()
            while chunks or pending:
                while chunks and len(pending) <= ahead:
                    chunk = chunks.popleft()
                    pending.append((chunk, pool.submit(lambda c: [load(p) for p in c], chunk)))
                chunk, future = pending.popleft()
                loaded = future.result()
                good = [(p, item) for p, item in zip(chunk, loaded) if isinstance(item, Prepared)]
                results = iter(self.predict_prepared([i for _, i in good], [str(p) for p, _ in good],
                                                     top_k, explain, min_confidence))
                for path, item in zip(chunk, loaded):
                    row = Prediction(str(path), error=item) if isinstance(item, str) else next(results)
                    if on_image is not None:
                        on_image(row)
                    yield row


def flops_per_image(model: torch.nn.Module, in_chans: int, img_size: int) -> int:
    """FLOPs of one 1 x C x S x S image as ``hnf model info`` counts them (FlopCounterMode,
    a multiply-add counts 2): :func:`hnf.models.info.model_report` for HNF models, the same
    counter over the whole forward pass for others, after one warm-up pass (a frozen text
    encoder's one-off pass over the descriptions is not a per-image cost)."""
    from torch.utils.flop_counter import FlopCounterMode

    from hnf.models.hnf import HNF
    from hnf.models.hnf_llm import HNFLLM
    from hnf.models.info import model_report

    if isinstance(model, (HNF, HNFLLM)):
        return int(model_report(model, img_size)["flops"])
    x = torch.zeros(1, in_chans, img_size, img_size)
    with torch.no_grad():
        model.eval()(x)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return int(counter.get_total_flops())

