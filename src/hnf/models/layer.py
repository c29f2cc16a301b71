"""One HNF layer: tokens of one patch scale, cross-scale exchange, experts, gate."""

from __future__ import annotations

import torch
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from hnf.models.attention import SelfAttention
from hnf.models.config import HNFConfig
from hnf.models.gate import ExpertGate
from hnf.models.graph import GraphExpert
from hnf.models.ode import BiODE
from hnf.models.patch_embed import ConvStem, PatchEmbed
from hnf.models.pooling import area_pool
from hnf.models.trunk import FeatureTokens


class SequenceExpert(nn.Module):
    """``depth`` transformer blocks (pre-norm self-attention + MLP; the attention kernel chosen per
    device by :class:`~hnf.models.attention.SelfAttention`), then the bidirectional ODE
    refinement when ``use_ode``."""

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


class CrossScale(nn.Module):
    """Hierarchical exchange: the previous layer's token grid, area-pooled onto this layer's grid
    (adaptive average pooling), through a linear map: x <- x + W pool(prev)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, grid: tuple[int, int], prev: Tensor,
                prev_grid: tuple[int, int]) -> Tensor:
        prev = self.norm(prev).transpose(1, 2).reshape(prev.shape[0], -1, *prev_grid)
        pooled = area_pool(prev, grid).flatten(2).transpose(1, 2)
        return x + self.proj(pooled)


class HNFLayer(nn.Module):
    """Layer for patch size P: tokens (+ cross-scale input), experts y_e, output sum_e w_e y_e.

    Experts, in gate order: sequence (attention + ODE), graph (k-NN ChebConv), interaction
    (an MLP of [y_seq, y_graph], present only when both exist). Switched-off parts are not built.
    Returns tokens (B, N, d), grid (h, w) and gate weights (B, N, E).
    """

    def __init__(self, cfg: HNFConfig, patch_size: int, first: bool, drop_path: float,
                 trunk_channels: int | None = None) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.patch_embed: PatchEmbed | FeatureTokens
        if trunk_channels is not None:  # tokens from the trunk's feature map at stride patch_size
            self.patch_embed = FeatureTokens(trunk_channels, dim, cfg.img_size // patch_size)
        elif cfg.stem == "conv":  # tokens from the shared stem's stride-4 feature map
            stride = ConvStem.stride
            self.patch_embed = PatchEmbed(patch_size // stride, cfg.stem_channels, dim,
                                          cfg.img_size // stride)
        else:
            self.patch_embed = PatchEmbed(patch_size, cfg.in_chans, dim, cfg.img_size)
        self.cross = CrossScale(dim) if cfg.cross_scale and not first else None
        self.sequence = SequenceExpert(cfg, drop_path) if cfg.use_sequence else None
        self.graph = (
            GraphExpert(dim, cfg.knn, cfg.cheb_k, cfg.graph_layers) if cfg.use_graph else None
        )
        both = cfg.use_sequence and cfg.use_graph
        self.interaction = Mlp(2 * dim, dim, dim) if both else None
        self.gate = ExpertGate(dim, len(cfg.experts), learned=cfg.use_gate)

    def forward(self, source: Tensor, prev: tuple[Tensor, tuple[int, int]] | None = None
                ) -> tuple[Tensor, tuple[int, int], Tensor]:
        """``source``: the image, the conv stem's feature map when ``cfg.stem == "conv"``, or this
        layer's trunk feature map when the model has a trunk."""
        x, grid = self.patch_embed(source)
        if self.cross is not None and prev is not None:
            x = self.cross(x, grid, *prev)
        experts = []
        if self.sequence is not None:
            experts.append(self.sequence(x))
        if self.graph is not None:
            experts.append(self.graph(x))
        if self.interaction is not None:
            experts.append(x + self.interaction(torch.cat(experts, dim=-1)))
        mixed, weights = self.gate(experts)
        return mixed, grid, weights

