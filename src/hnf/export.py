"""Export a checkpoint to ONNX, and check onnxruntime against PyTorch.

The graph takes ``image`` (float32, N x C x S x S, already normalised: see ``docs/onnx.md``) and
returns ``logits`` (N x classes, the model's raw logits z) and ``probabilities`` (N x classes,
the calibrated softmax(z / T) with the checkpoint's temperature T baked into the graph as a
constant; :mod:`hnf.trust`); the batch dimension is dynamic, the image size is the
checkpoint's. Class names, preprocessing and the temperature travel in the ONNX metadata
(``hnf.classes``, ``hnf.preprocessing``, ``hnf.model``, ``hnf.version``, ``hnf.temperature``), so
the file is all a user needs. The unknown-input detector is not exported.

How the HNF model is exported (torch 2.14): the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``) traces one forward pass at opset 17. The torch.export
based exporter (``dynamo=True``) needs the ``onnxscript`` package, which hnf does not depend on.
The model's own code traces faithfully: the cross-scale exchange pools with constant pooling
matrices while it is traced (:func:`hnf.models.pooling.area_pool`; the exporter refuses adaptive
pooling onto a grid that does not divide the input's), and the graph expert's k-NN graph is built
without in-place writes (:func:`hnf.models.graph.knn_graph`; the exporter drops in-place writes to
views, and the graph would keep its self-loops).

The fixed-step ODE solvers of :mod:`hnf.models.ode` (rk4, Euler, midpoint) unroll into plain
operations and top-k becomes ONNX ``TopK``; the adjoint method is only for training and does not
change the forward pass.

Class-text features: a model with a language branch (``hnf_llm_*``) computes its text side from
the class descriptions, the same for every image. The export computes each
:class:`hnf.models.text_encoder.TextEncoder`'s features once and has the encoder return those
tensors while tracing, so they enter the graph as constants: the ONNX file holds no text encoder,
tokenizer or descriptions (``hnf_llm_small``'s file is the size of its vision side). The tracer
also reads the state dict, whose text-encoder entry carries the descriptions as a dict (extra
state); that entry is hidden from it while tracing.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hnf import __version__
from hnf.atomic import atomic_write_text
from hnf.errors import HnfError
from hnf.train.checkpoint import CheckpointMeta, load_checkpoint

OPSET = 17


class ExportError(HnfError):
    """The model could not be exported or the exported file does not match PyTorch."""


@contextlib.contextmanager
def frozen_text_features(model: torch.nn.Module) -> Iterator[int]:
    """Compute every text encoder's features once (eval, no grad) and have the encoder return
    those tensors while tracing, so they enter the graph as constants; yields how many."""
    try:
        from hnf.models.text_encoder import TextEncoder
    except ImportError:  # pragma: no cover - no language branch in this build
        yield 0
        return
    encoders = [m for m in model.modules() if isinstance(m, TextEncoder)]
    for encoder in encoders:
        encoder.eval()
        with torch.no_grad():
            features = encoder()
        encoder.forward = lambda features=features: features  # instance attribute: the baked features
    try:
        yield len(encoders)
    finally:
        for encoder in encoders:
            del encoder.forward


@contextlib.contextmanager
def without_extra_state(model: torch.nn.Module) -> Iterator[None]:
    """Hide ``get_extra_state`` (e.g. the text encoder's descriptions, a dict) from the tracer,
    which expects only tensors in the state dict; the classes are restored afterwards."""
    swapped = []
    for module in model.modules():
        cls = type(module)
        if getattr(cls, "get_extra_state", torch.nn.Module.get_extra_state) is not torch.nn.Module.get_extra_state:
            plain = type(cls.__name__, (cls,), {"get_extra_state": torch.nn.Module.get_extra_state})
            module.__class__ = plain
            swapped.append((module, cls))
    try:
        yield
    finally:
        for module, cls in swapped:
            module.__class__ = cls


@dataclass
class ExportReport:
    path: str
    model: str
    classes: list[str]
    img_size: int
    in_chans: int
    opset: int
    bytes: int
    max_abs_diff: float | None

    def to_json(self) -> dict:
        return asdict(self)


class _Logits(torch.nn.Module):
    """The model's logits alone (some models return tuples when asked for more)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tensor:
        out = self.model(image)
        return out[0] if isinstance(out, tuple) else out


class _Exported(_Logits):
    """The exported graph: raw logits z and calibrated probabilities softmax(z / T)."""

    def __init__(self, model: torch.nn.Module, temperature: float) -> None:
        super().__init__(model)
        self.temperature = float(temperature)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        logits = super().forward(image)
        return logits, (logits.float() / self.temperature).softmax(-1)


def export_model(model: torch.nn.Module, meta: CheckpointMeta, out: str | Path, opset: int = OPSET) -> Path:
    """Write ``model`` (in eval mode) as ONNX with the metadata of the module docstring."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pre = meta.preprocessing
    model = model.eval().cpu()
    example = torch.zeros(2, pre.in_chans, pre.img_size, pre.img_size)
    wrapper = _Exported(model, meta.temperature).eval()
    tmp = out.with_name(out.name + ".tmp")
    try:
        with torch.no_grad():
            wrapper(example)  # fills eval-time caches (text features) before tracing
        with frozen_text_features(model), without_extra_state(model), \
                warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["logits", "probabilities"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
            )
        proto = onnx.load(str(tmp))
        for key, value in {
            "hnf.model": meta.model,
            "hnf.classes": json.dumps(list(meta.classes)),
            "hnf.preprocessing": json.dumps(asdict(pre)),
            "hnf.version": __version__,
            "hnf.temperature": repr(float(meta.temperature)),
        }.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        tmp.replace(out)
        write_band_helper(out.parent)
    except HnfError:
        raise
    except Exception as err:  # the exporter raises many types; say what failed and where
        raise ExportError(f"cannot export {meta.model!r} to ONNX: {type(err).__name__}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return out


BAND_HELPER = "hnf_band.py"
"""The information-band detector (numpy only) written beside every export, so the documented
route without hnf (``docs/onnx.md``) cuts the band as ``hnf predict`` does."""


def write_band_helper(folder: Path) -> Path:
    """Write :mod:`hnf.data.band` (it needs only numpy) as ``folder/hnf_band.py``."""
    from hnf.data import band

    return atomic_write_text(folder / BAND_HELPER, Path(band.__file__).read_text(encoding="utf-8"))


def onnx_logits(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Run an exported file with onnxruntime (CPU) on a normalised N x C x S x S batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images.astype(np.float32)})[0]


def compare_with_torch(path: str | Path, model: torch.nn.Module, images: Tensor) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's logits on ``images``."""
    with torch.no_grad():
        expected = _Logits(model.eval())(images).float().numpy()
    return float(np.abs(onnx_logits(path, images.numpy()) - expected).max())


def export_checkpoint(checkpoint: str | Path, out: str | Path, opset: int = OPSET,
                      check_images: Tensor | None = None) -> ExportReport:
    """Export a checkpoint folder; with ``check_images`` also measure the logit difference."""
    from hnf.predict import resolve_checkpoint

    model, meta = load_checkpoint(resolve_checkpoint(checkpoint))
    path = export_model(model, meta, out, opset)
    diff = compare_with_torch(path, model, check_images) if check_images is not None else None
    pre = meta.preprocessing
    return ExportReport(str(path), meta.model, list(meta.classes), pre.img_size, pre.in_chans, opset,
                        path.stat().st_size, diff)
