"""A timm-style model registry: each model name maps to its configuration and its builder.

The registry is a leaf: model modules import it and register themselves when they are imported
(:mod:`hnf.models` imports them all); it imports no model module. A model module registers a
function returning its named configuration together with the builder that turns such a
configuration into a model::

    @register_model(build_hnf)
    def hnf_small() -> HNFConfig:
        return HNFConfig()

:func:`hnf.models.factory.create_model` looks the name up here (and falls back to timm for
names not registered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hnf.models.config import ConfigError, HNFConfig

if TYPE_CHECKING:
    from torch import nn


class ModelBuilder(Protocol):
    """Builds a model from a registered configuration.

    ``class_names``: the class order of a model that needs the names (text-fused models), None
    for the builder's default; ``load_descriptions=False``: leave class descriptions to a
    checkpoint's state; ``load_weights=False``: build pretrained parts without their weights (a
    checkpoint brings them). Models that need neither ignore them.
    """

    def __call__(self, config: Any, *, class_names: list[str] | None, load_descriptions: bool,
                 load_weights: bool) -> nn.Module: ...


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its configuration function and its builder."""

    config: Callable[[], HNFConfig]
    builder: ModelBuilder


ConfigFn = TypeVar("ConfigFn", bound=Callable[[], HNFConfig])

_MODELS: dict[str, ModelEntry] = {}


def register_model(builder: ModelBuilder) -> Callable[[ConfigFn], ConfigFn]:
    """Decorator factory: register a function returning an :class:`HNFConfig` under its own name,
    built by ``builder``. A name registered twice is an error."""

    def register(fn: ConfigFn) -> ConfigFn:
        if fn.__name__ in _MODELS:
            raise ConfigError(f"model {fn.__name__!r} is registered twice")
        _MODELS[fn.__name__] = ModelEntry(fn, builder)
        return fn

    return register


def is_model(name: str) -> bool:
    """True when ``name`` is a registered hnf model."""
    return name in _MODELS


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def _entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _MODELS[name]


def model_builder(name: str) -> ModelBuilder:
    """The builder registered for ``name`` (unknown names raise :class:`ConfigError`)."""
    return _entry(name).builder


def get_config(name: str, **overrides: Any) -> HNFConfig:
    """The named configuration with ``overrides`` applied (unknown fields raise :class:`ConfigError`)."""
    base = _entry(name).config()
    unknown = set(overrides) - set(type(base).field_names())
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)} for {name!r}")
    return replace(base, **overrides)


def trunk_crop_multiple(name: str, overrides: dict[str, Any] | None = None) -> int | None:
    """The coarsest stride of registered model ``name``'s trunk with ``overrides`` applied (every
    crop must be a multiple of it), or None for a model without a trunk (a timm baseline, or an
    HNF model that makes its own tokens, takes its crop by its patch sizes instead)."""
    if not is_model(name):
        return None
    overrides = overrides or {}
    registered = get_config(name)
    if overrides.get("trunk", registered.trunk) is None:
        return None
    return max(int(s) for s in overrides.get("scales", registered.scales))
