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
    unknown = set(overrides) - set(HNFConfig.field_names())
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} for {name!r}")
    return replace(_CONFIGS[name](), **overrides)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the named model, e.g. ``create_model("hnf_small", num_classes=3, use_ode=False)``."""
    from hnf.models.hnf import HNF

    return HNF(get_config(name, **overrides))
