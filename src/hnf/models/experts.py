"""The experts of an HNF layer, as one table.

:data:`EXPERTS` lists every expert in gate order, each with its builder and its configuration
switch. Everything that depends on which experts exist is derived from it: the experts an
:class:`~hnf.models.layer.HNFLayer` builds (an ``nn.ModuleDict`` in table order), the config's
:attr:`~hnf.models.config.HNFConfig.experts`, the parameter/FLOP components of
:func:`~hnf.models.info.model_report` and the "without <expert>" rows of
:func:`~hnf.train.experiments.ablation_grid`. Adding an expert is one row here (plus its config
fields in :class:`~hnf.models.config.HNFConfig`).

Two kinds of expert: a *base* expert maps the layer's tokens x (B, N, d) to (B, N, d) and is
switched by a boolean config field; a *combining* expert maps x and the outputs of the E_b base
experts to (B, N, d) and is built when at least two base experts are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from hnf.models.attention import SelfAttention
from hnf.models.graph import GraphExpert
from hnf.models.ode import BiODE

if TYPE_CHECKING:
    from hnf.models.config import HNFConfig


class SequenceExpert(nn.Module):
    """``depth`` transformer blocks (pre-norm self-attention + MLP; the attention kernel chosen per
    device by :class:`~hnf.models.attention.SelfAttention`), then the bidirectional ODE
    refinement when ``use_ode``.

    Args:
        cfg: the configuration (``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, the
            ``ode_*`` fields).
        drop_path: stochastic-depth rate of the blocks.

    Shapes:
        - **input:** tokens x (B, N, d)
        - **output:** tokens (B, N, d)
    """

    def __init__(self, cfg: HNFConfig, drop_path: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, drop_path=drop_path,
                  attn_layer=SelfAttention)
            for _ in range(cfg.depth)
        ))
        self.ode = (
            BiODE(cfg.embed_dim, cfg.ode_hidden_ratio, cfg.ode_time, cfg.ode_method,
                  cfg.ode_steps, cfg.ode_adjoint)
            if cfg.use_ode else None
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(x)
        return self.ode(x) if self.ode is not None else x


class InteractionExpert(nn.Module):
    """y = x + MLP([y_1, ..., y_{E_b}]): an MLP of the concatenated base experts' outputs, added to
    the layer's tokens; its input width E_b * d follows the number of base experts.

    Args:
        dim: token width d.
        num_inputs: number E_b of base experts it reads.

    Shapes:
        - **input:** tokens x (B, N, d); ``inputs``: E_b tensors (B, N, d)
        - **output:** tokens (B, N, d)
    """

    def __init__(self, dim: int, num_inputs: int) -> None:
        super().__init__()
        self.mlp = Mlp(num_inputs * dim, dim, dim)

    def forward(self, x: Tensor, inputs: list[Tensor]) -> Tensor:
        return x + self.mlp(torch.cat(inputs, dim=-1))


ExpertBuilder = Callable[["HNFConfig", float, int], nn.Module]
"""``build(cfg, drop_path, num_base)``: the expert's module for one layer, given the layer's
stochastic-depth rate and the number of base experts built."""


@dataclass(frozen=True)
class ExpertSpec:
    """One row of the expert table.

    name: the expert's name (gate order, ``HNFFeatures.experts``, the ``ModuleDict`` key).
    build: its :data:`ExpertBuilder`.
    flag: the boolean config field that switches a base expert on; None for a combining expert.
    components: (report component, path below the expert's module; "" the whole module) for
        :func:`~hnf.models.info.model_report`.
    """

    name: str
    build: ExpertBuilder
    flag: str | None
    components: tuple[tuple[str, str], ...]

    @property
    def combines(self) -> bool:
        """True for a combining expert (reads the base experts' outputs)."""
        return self.flag is None


def _sequence(cfg: HNFConfig, drop_path: float, num_base: int) -> nn.Module:
    return SequenceExpert(cfg, drop_path)


def _graph(cfg: HNFConfig, drop_path: float, num_base: int) -> nn.Module:
    return GraphExpert(cfg.embed_dim, cfg.knn, cfg.cheb_k, cfg.graph_layers)


def _interaction(cfg: HNFConfig, drop_path: float, num_base: int) -> nn.Module:
    return InteractionExpert(cfg.embed_dim, num_base)


EXPERTS: tuple[ExpertSpec, ...] = (
    ExpertSpec("sequence", _sequence, "use_sequence", (("attention", "blocks"), ("ode", "ode"))),
    ExpertSpec("graph", _graph, "use_graph", (("graph", ""),)),
    ExpertSpec("interaction", _interaction, None, (("interaction", ""),)),
)
"""Every expert, in gate order: base experts first, then combining ones."""


def base_experts() -> tuple[ExpertSpec, ...]:
    """The table's base experts (each with its config switch)."""
    return tuple(spec for spec in EXPERTS if not spec.combines)


def active_experts(cfg: HNFConfig) -> tuple[ExpertSpec, ...]:
    """The experts ``cfg`` switches on, in gate order: the base experts whose flag is True, then
    the combining experts when at least two base experts are on."""
    base = tuple(spec for spec in base_experts() if getattr(cfg, spec.flag))  # type: ignore[arg-type]
    combining = tuple(spec for spec in EXPERTS if spec.combines) if len(base) >= 2 else ()
    return base + combining


LEGACY_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|\.)layers\.(\d+)\.(sequence|graph)\."), r"\1layers.\2.experts.\3."),
    (re.compile(r"(^|\.)layers\.(\d+)\.interaction\."), r"\1layers.\2.experts.interaction.mlp."),
)
"""How the state-dict keys of checkpoints written before the experts lived in a table map onto
today's: ``layers.<i>.sequence|graph.*`` -> ``layers.<i>.experts.<name>.*`` and
``layers.<i>.interaction.*`` -> ``layers.<i>.experts.interaction.mlp.*`` (also under
``backbone.`` in the text-fused models)."""


def upgrade_state_dict_keys(state: dict[str, object], expected: Iterable[str]) -> dict[str, object]:
    """``state`` with each key the model does not know renamed by :data:`LEGACY_KEY_RULES`
    (keys the model knows are kept as they are), so older checkpoints load unchanged."""
    known = set(expected)
    upgraded: dict[str, object] = {}
    for key, value in state.items():
        if key not in known:
            for pattern, replacement in LEGACY_KEY_RULES:
                key = pattern.sub(replacement, key)
        upgraded[key] = value
    return upgraded
