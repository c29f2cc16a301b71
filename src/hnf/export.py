"""Export a checkpoint to ONNX, and check onnxruntime against PyTorch.

The graph takes ``image`` (float32, N x C x S x S, already normalised: see ``docs/onnx.md``) and
returns ``logits`` (N x classes); the batch dimension is dynamic, the image size is the
checkpoint's. Class names and preprocessing travel in the ONNX metadata (``hnf.classes``,
``hnf.preprocessing``, ``hnf.model``, ``hnf.version``), so the file is all a user needs.

How the HNF model is exported (torch 2.14): the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``) traces one forward pass at opset 17. The torch.export
based exporter (``dynamo=True``) needs the ``onnxscript`` package, which hnf does not depend on.
Two functions of the model do not trace faithfully and are replaced, only while tracing and only
in the modules that call them, by equivalents that compute the same values:

* ``F.adaptive_avg_pool2d`` in the cross-scale exchange: its output grid comes from the input's
  shape, which the tracer records as a dynamic value, and the exporter refuses adaptive pooling
  to a non-constant size. The replacement multiplies by constant pooling matrices
  (``P_h X P_w^T``, the same windows ``floor(i H / h)`` to ``ceil((i + 1) H / h)``).
* ``knn_graph`` of the graph expert: it masks the diagonal and scatters the k-NN edges in place
  on views, which the exporter drops (the graph would keep self-loops; logits then differ by
  1e-2). The replacement is out of place (``torch.where`` with an identity mask, ``scatter``).

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
import threading
import types
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from hnf import __version__
from hnf.atomic import atomic_write_text
from hnf.errors import HnfError
from hnf.train.checkpoint import CheckpointMeta, load_checkpoint

OPSET = 17
_PATCH_LOCK = threading.Lock()


class ExportError(HnfError):
    """The model could not be exported or the exported file does not match PyTorch."""


def _pool_matrix(n_in: int, n_out: int, dtype: torch.dtype) -> Tensor:
    matrix = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix.to(dtype)


def adaptive_avg_pool2d_static(x: Tensor, output_size: int | tuple[int, int]) -> Tensor:
    """``F.adaptive_avg_pool2d`` as two products with constant pooling matrices."""
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    rows, cols = (int(v) for v in output_size)
    left = _pool_matrix(int(x.shape[-2]), rows, x.dtype)
    right = _pool_matrix(int(x.shape[-1]), cols, x.dtype)
    return left @ x @ right.T


@torch.no_grad()
def knn_graph_out_of_place(x: Tensor, k: int) -> Tensor:
    """:func:`hnf.models.graph.knn_graph` without in-place writes (same values)."""
    batch, n, _ = x.shape
    k = min(k, n - 1)
    if k <= 0:
        return x.new_zeros(batch, n, n, dtype=torch.float32)
    unit = F.normalize(x.float(), dim=-1)
    sim = unit @ unit.transpose(1, 2)
    eye = torch.eye(n, dtype=torch.float32, device=x.device) > 0.5
    sim = torch.where(eye, torch.full_like(sim, float("-inf")), sim)
    adj = torch.zeros_like(sim).scatter(-1, sim.topk(k, dim=-1).indices, 1.0)
    return torch.maximum(adj, adj.transpose(1, 2))


@contextlib.contextmanager
def export_friendly() -> Iterator[None]:
    """Swap in the traceable equivalents of the module docstring, and restore them afterwards."""
    from hnf.models import graph, layer

    with _PATCH_LOCK:
        functional = types.SimpleNamespace(
            **{name: getattr(F, name) for name in dir(F) if not name.startswith("__")}
        )
        functional.adaptive_avg_pool2d = adaptive_avg_pool2d_static
        saved = (layer.F, graph.knn_graph)
        layer.F, graph.knn_graph = functional, knn_graph_out_of_place
        try:
            yield
        finally:
            layer.F, graph.knn_graph = saved


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


def export_model(model: torch.nn.Module, meta: CheckpointMeta, out: str | Path, opset: int = OPSET) -> Path:
    """Write ``model`` (in eval mode) as ONNX with the metadata of the module docstring."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pre = meta.preprocessing
    model = model.eval().cpu()
    example = torch.zeros(2, pre.in_chans, pre.img_size, pre.img_size)
    wrapper = _Logits(model).eval()
    tmp = out.with_name(out.name + ".tmp")
    try:
        with torch.no_grad():
            wrapper(example)  # fills eval-time caches (text features) before tracing
        with export_friendly(), frozen_text_features(model), without_extra_state(model), \
                warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            )
        proto = onnx.load(str(tmp))
        for key, value in {
            "hnf.model": meta.model,
            "hnf.classes": json.dumps(list(meta.classes)),
            "hnf.preprocessing": json.dumps(asdict(pre)),
            "hnf.version": __version__,
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
