"""A timm-style model registry: named configurations, built by ``create_model(name, **overrides)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch import nn

from hnf.models.config import ConfigError, HNFConfig

_CONFIGS: dict[str, Callable[[], HNFConfig]] = {}


def register_model(fn: Callable[[], HNFConfig]) -> Callable[[], HNFConfig]:
    """Decorator: register a function returning an :class:`HNFConfig` under its own name."""
    _CONFIGS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_CONFIGS)


def get_config(name: str, **overrides: Any) -> HNFConfig:
    """The named configuration with ``overrides`` applied (unknown fields raise :class:`ConfigError`)."""
    if name not in _CONFIGS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    base = _CONFIGS[name]()
    unknown = set(overrides) - set(type(base).field_names())
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} for {name!r}")
    return replace(base, **overrides)


def create_model(name: str, class_names: list[str] | None = None, **overrides: Any) -> nn.Module:
    """Build the named model, e.g. ``create_model("hnf_small", num_classes=3, use_ode=False)``.

    Text-fused models (``hnf_llm_*``) take ``class_names`` (their descriptions are looked up by
    name); without them they use the ten NFFA classes.
    """
    from hnf.models.hnf import HNF
    from hnf.models.hnf_llm import HNFLLM, HNFLLMConfig

    config = get_config(name, **overrides)
    if isinstance(config, HNFLLMConfig):
        if class_names is None:
            from hnf.data.synth import SYNTH_CLASSES

            class_names = list(SYNTH_CLASSES)
        return HNFLLM(config, class_names)
    return HNF(config)
