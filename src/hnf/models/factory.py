"""One entry point for every classifier hnf trains: the HNF registry and timm baselines.

``build_classifier("hnf_small", num_classes=3)`` builds a registered HNF model;
``build_classifier("resnet18", num_classes=3)`` builds the timm model of that name with
``in_chans`` grey input channels, from scratch unless ``pretrained=True`` (which needs a hub).
"""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from hnf.models.config import ConfigError
from hnf.models.hnf import HNF
from hnf.models.hnf_llm import HNFLLM, HNFLLMConfig
from hnf.models.registry import get_config, list_models

BASELINES = ("resnet18", "convnext_atto", "vit_tiny_patch16_224")
"""The timm baselines of DESIGN.md section 4 (any timm model name is accepted)."""


def build_classifier(
    name: str,
    num_classes: int,
    in_chans: int = 1,
    img_size: int = 224,
    pretrained: bool = False,
    class_names: list[str] | None = None,
    load_descriptions: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build the HNF model or timm model called ``name`` for ``num_classes`` classes.

    Text-fused HNF models need ``class_names`` (descriptions are per class);
    ``load_descriptions=False`` builds them without looking descriptions up (for loading a
    checkpoint, whose state dict carries them).
    """
    if name in list_models():
        if pretrained:
            raise ConfigError(f"{name} has no pretrained weights; train it with `hnf train`")
        config = get_config(name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **overrides)
        if isinstance(config, HNFLLMConfig):
            names = class_names or [f"class_{i}" for i in range(num_classes)]
            return HNFLLM(config, names, load_descriptions=load_descriptions)
        return HNF(config)
    if not timm.is_model(name):
        raise ConfigError(
            f"unknown model {name!r}: expected an hnf model ({', '.join(list_models())}) "
            f"or a timm model name (e.g. {', '.join(BASELINES)})"
        )
    extra = {"img_size": img_size} if "vit" in name or "deit" in name else {}
    return timm.create_model(
        name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **extra, **overrides
    )
