"""Checkpoints on disk: safetensors for tensors, JSON for everything else; never pickle.

A checkpoint is a folder::

    checkpoint.json                  format, hnf version, model name and overrides, classes,
                                     preprocessing, epoch, the weights file's name and SHA-256,
                                     and non-tensor module state (e.g. the class descriptions)
    model-e<epoch>-s<step>.safetensors  the model's weights, except frozen parameters
    frozen-<sha256[:16]>.safetensors    the frozen parameters (a frozen text encoder: 90 MB of
                                     hnf_llm_small's 100), named by content and written only
                                     when they change, so a training run writes them once
    train-e<epoch>-s<step>.safetensors  optimizer tensors and RNG states (for --resume only)
    train-e<epoch>-s<step>.json         optimizer hyper-parameters, step counters, Python/NumPy RNG
                                     (both training-state files SHA-256-checked like the weights)
    ood-<sha256[:16]>.safetensors      class means and precision matrix of the unknown-input
                                     detector fitted at the end of training (``temperature`` and
                                     ``ood`` in checkpoint.json; :mod:`hnf.trust`)

Tensor files carry the epoch and step in their name and are written before the JSON that points
at them (each write is atomic), so a crash at any moment leaves the previous checkpoint whole; old
tensor files are removed only after the new JSON is in place.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from hnf import __version__
from hnf.atomic import atomic_write_bytes, atomic_write_json
from hnf.errors import HnfError
from hnf.models.experts import upgrade_state_dict_keys
from hnf.models.factory import build_classifier

CHECKPOINT_FORMAT = "hnf-checkpoint/1"
WRITTEN_FILE = re.compile(r"(model-e\d{4}-s\d{8}\.safetensors|train-e\d{4}-s\d{8}\.(safetensors|json)"
                          r"|frozen-[0-9a-f]{16}\.safetensors|ood-[0-9a-f]{16}\.safetensors)")
"""Names of the tensor and state files :func:`save_checkpoint` writes (and may remove again)."""
META_FILE = "checkpoint.json"
TEXT_ENCODER_DIR = "text-encoder"
"""Folder of a checkpoint with the text encoder's config and tokenizer (its weights are in the
tensor files); ``model_overrides["text_encoder"]`` names it, relative to the checkpoint."""
READ_ONCE_OVERRIDES = ("descriptions", "trunk_weights", "weights")
"""Overrides naming files a checkpoint never reads again (the descriptions live in its extra state,
pretrained weights in its tensors): saved as the file's name, not its local path."""


def _without_local_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with each path in :data:`READ_ONCE_OVERRIDES` cut to its file name
    (``/home/me/runs/desc.json`` -> ``desc.json``; ``hub``, ``none`` and wheel names stay)."""
    cleaned = dict(overrides)
    for key in READ_ONCE_OVERRIDES:
        value = cleaned.get(key)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            cleaned[key] = Path(value).name
    return cleaned



class CheckpointError(HnfError):
    """A checkpoint that cannot be used (missing, truncated, another version or architecture)."""


@dataclass
class Preprocessing:
    """How images are prepared for the model; stored with the weights so inference matches."""

    img_size: int = 224
    resize: int = 256
    mean: float = 0.5
    std: float = 0.25
    in_chans: int = 1
    crop_band: bool = True
    normalisation: str = "per_image"
    # nanometres per pixel that images with a stated pixel size are resampled to (hnf train
    # --pixel-size); None: every image's short side resized to ``resize``
    pixel_size_nm: float | None = None


@dataclass
class CheckpointMeta:
    """The JSON half of a checkpoint."""

    model: str
    classes: list[str]
    model_overrides: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    epoch: int = 0
    step: int = 0
    weights: str = ""
    weights_sha256: str = ""
    frozen_weights: str | None = None
    frozen_sha256: str = ""
    train_state: str | None = None
    train_state_sha256: str = ""
    train_state_json_sha256: str = ""
    extra_state: dict[str, Any] = field(default_factory=dict)
    # calibration and unknown-input detector fitted at the end of training (hnf.trust); checkpoints
    # without them: temperature 1, no detector
    temperature: float = 1.0
    ood: dict[str, Any] | None = None
    # classes added after training (hnf classes add): name, images, method, descriptions
    added_classes: list[dict[str, Any]] = field(default_factory=list)
    hnf_version: str = __version__
    format: str = CHECKPOINT_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> CheckpointMeta:
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise CheckpointError(
                f"{where}: not an hnf checkpoint of format {CHECKPOINT_FORMAT!r} (found {found!r})"
            )
        try:
            values = dict(data)
            # checkpoints written before per-image normalisation existed used the fixed one
            values["preprocessing"] = Preprocessing(**{"normalisation": "fixed", **values.get("preprocessing", {})})
            return cls(**values)
        except TypeError as err:
            raise CheckpointError(f"{where}: malformed checkpoint metadata ({err})") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_frozen_written: dict[Path, tuple[list[tuple[str, weakref.ref, int]], str, str]] = {}
"""Per checkpoint folder: the frozen parameters last written there (weak references and in-place
versions), the file's name and SHA-256."""


def _write_frozen(directory: Path, frozen: dict[str, torch.nn.Parameter]) -> tuple[str, str]:
    """Write the frozen parameters once per content; return (file name, SHA-256).

    Within one process a file is reused without serialising again while the frozen parameters
    are the same objects at the same in-place version (``Tensor._version``), i.e. unchanged."""
    known = _frozen_written.get(directory)
    if (known is not None and (directory / known[1]).is_file() and len(known[0]) == len(frozen)
            and all(frozen.get(name) is ref() and ref()._version == version for name, ref, version in known[0])):
        return known[1], known[2]
    payload = save({k: v.detach().cpu().contiguous() for k, v in frozen.items()})
    digest = _sha256(payload)
    name = f"frozen-{digest[:16]}.safetensors"
    if not (directory / name).is_file():
        atomic_write_bytes(directory / name, payload)
    _frozen_written[directory] = ([(k, weakref.ref(v), v._version) for k, v in frozen.items()], name, digest)
    return name, digest


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and the rest (JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in rest["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    meta: CheckpointMeta,
    optimizer: torch.optim.Optimizer | None = None,
    train_counters: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder (see the module docstring); return the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tag = f"e{meta.epoch:04d}-s{meta.step:08d}"
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "save_definition"):  # the checkpoint carries its text encoder
        if not (directory / TEXT_ENCODER_DIR / "config.json").is_file():
            from hnf.text.mlm import save_atomic_dir

            save_atomic_dir(directory / TEXT_ENCODER_DIR, text.save_definition)  # never half-written
        meta.model_overrides = {**meta.model_overrides, "text_encoder": TEXT_ENCODER_DIR}
    meta.model_overrides = _without_local_paths(meta.model_overrides)
    state = model.state_dict()
    frozen = {name: param for name, param in model.named_parameters() if not param.requires_grad}
    weights = {k: v.detach().cpu().contiguous() for k, v in state.items()
               if isinstance(v, torch.Tensor) and k not in frozen}
    meta.extra_state = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    meta.frozen_weights, meta.frozen_sha256 = _write_frozen(directory, frozen) if frozen else (None, "")
    payload = save(weights)
    meta.weights = f"model-{tag}.safetensors"
    meta.weights_sha256 = _sha256(payload)
    atomic_write_bytes(directory / meta.weights, payload)
    meta.train_state, meta.train_state_sha256, meta.train_state_json_sha256 = None, "", ""
    if optimizer is not None:
        tensors, rest = _flatten_optimizer(optimizer.state_dict())
        tensors["rng.torch"] = torch.get_rng_state()
        numpy_state = np.random.get_state()
        rest.update(
            counters=train_counters or {},
            python_rng=[random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            numpy_rng=[numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        )
        meta.train_state = f"train-{tag}"
        state_payload = save(tensors)
        meta.train_state_sha256 = _sha256(state_payload)
        atomic_write_bytes(directory / f"{meta.train_state}.safetensors", state_payload)
        json_payload = (json.dumps(rest, indent=2) + "\n").encode("utf-8")
        meta.train_state_json_sha256 = _sha256(json_payload)
        atomic_write_bytes(directory / f"{meta.train_state}.json", json_payload)
    atomic_write_json(directory / META_FILE, meta.to_json())
    keep = {meta.weights, f"{meta.train_state}.safetensors", f"{meta.train_state}.json", meta.frozen_weights,
            (meta.ood or {}).get("file")}
    for old in directory.iterdir():
        if WRITTEN_FILE.fullmatch(old.name) and old.name not in keep:  # only what this module wrote
            old.unlink(missing_ok=True)
    return directory


def read_meta(path: str | Path) -> tuple[Path, CheckpointMeta]:
    """The checkpoint folder and its metadata; ``path`` may be the folder or its JSON file."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    meta_path = directory / META_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not meta_path.is_file():
        raise CheckpointError(f"{directory}: not a checkpoint folder (no {META_FILE})")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path}: unreadable checkpoint metadata ({err})") from None
    return directory, CheckpointMeta.from_json(data, meta_path)


def _read_tensor_file(directory: Path, name: str, sha256: str) -> dict[str, torch.Tensor]:
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file missing")
    if _sha256(path.read_bytes()) != sha256:
        raise CheckpointError(
            f"{path}: weights do not match {META_FILE} (SHA-256 differs; truncated or replaced file)"
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable weights ({err})") from None


def _read_weights(directory: Path, meta: CheckpointMeta) -> dict[str, torch.Tensor]:
    weights = _read_tensor_file(directory, meta.weights, meta.weights_sha256)
    if meta.frozen_weights:
        weights.update(_read_tensor_file(directory, meta.frozen_weights, meta.frozen_sha256))
    return weights


def build_model_of(directory: Path, meta: CheckpointMeta) -> torch.nn.Module:
    """The architecture ``meta`` describes (its model, overrides, classes and preprocessing),
    without weights; the text encoder's definition is read from ``directory``."""
    overrides = dict(meta.model_overrides)
    if overrides.get("text_encoder") == TEXT_ENCODER_DIR:
        overrides["text_encoder"] = str(directory / TEXT_ENCODER_DIR)
    try:
        model = build_classifier(
            meta.model,
            num_classes=len(meta.classes),
            in_chans=meta.preprocessing.in_chans,
            img_size=meta.preprocessing.img_size,
            class_names=meta.classes,
            load_descriptions=False,
            load_weights_now=False,  # the checkpoint holds every weight, pretrained ones included
            **overrides,
        )
    except HnfError as err:
        raise CheckpointError(f"{directory}: cannot rebuild model {meta.model!r} ({err})") from None
    return model


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model of a checkpoint and load its weights; errors name the file and problem."""
    directory, meta = read_meta(path)
    model = build_model_of(directory, meta)
    expected = model.state_dict()
    weights: dict[str, Any] = upgrade_state_dict_keys({**_read_weights(directory, meta), **meta.extra_state}, expected)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong_shape = [
        k for k, v in expected.items()
        if isinstance(v, torch.Tensor) and k in weights and getattr(weights[k], "shape", None) != v.shape
    ]
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "") if missing else "",
                f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else "") if unexpected else "",
                f"shape differs for {', '.join(wrong_shape[:3])}" if wrong_shape else "",
            )
            if part
        )
        raise CheckpointError(
            f"{directory}: weights do not fit the architecture {meta.model!r} of hnf {__version__} ({details})"
        )
    model.load_state_dict(weights)
    return model.to(map_location), meta


def load_train_state(directory: Path, meta: CheckpointMeta, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore optimizer and RNG states saved with a checkpoint; return the training counters."""
    if meta.train_state is None:
        raise CheckpointError(f"{directory}: checkpoint has no training state to resume from")
    tensor_file, json_file = f"{meta.train_state}.safetensors", directory / f"{meta.train_state}.json"
    try:
        if meta.train_state_sha256:  # checkpoints of older versions carry no checksums of the state
            tensors = _read_tensor_file(directory, tensor_file, meta.train_state_sha256)
            if _sha256(json_file.read_bytes()) != meta.train_state_json_sha256:
                raise CheckpointError(f"{json_file}: training state does not match {META_FILE} (SHA-256 differs; "
                                      f"truncated or replaced file)")
        else:
            tensors = load_file(directory / tensor_file)
        rest = json.loads(json_file.read_text(encoding="utf-8"))
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{directory}: unreadable training state ({err})") from None
    optimizer.load_state_dict(_unflatten_optimizer(tensors, rest))
    torch.set_rng_state(tensors["rng.torch"])
    version, state, gauss = rest["python_rng"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, *others = rest["numpy_rng"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *others))
    return rest["counters"]
