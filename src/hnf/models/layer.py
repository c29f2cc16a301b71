"""One HNF layer: tokens of one patch scale, cross-scale exchange, experts, gate."""

from __future__ import annotations

from torch import Tensor, nn

from hnf.models.config import HNFConfig
from hnf.models.experts import active_experts
from hnf.models.gate import ExpertGate
from hnf.models.patch_embed import ConvStem, PatchEmbed
from hnf.models.pooling import area_pool
from hnf.models.trunk import FeatureTokens


class CrossScale(nn.Module):
    r"""Hierarchical exchange: the previous layer's token grid, area-pooled onto this layer's grid
    (adaptive average pooling, :func:`~hnf.models.pooling.area_pool`), through a linear map:

    .. math::
        x \leftarrow x + W \, \mathrm{pool}_{h \times w}(\mathrm{LN}(x_{prev})) + b.

    Args:
        dim: token width d (the same at every scale).

    Shapes:
        - **input:** tokens x (B, h*w, d) row-major over ``grid`` (h, w); ``prev`` (B, h'*w', d)
          row-major over ``prev_grid`` (h', w')
        - **output:** tokens (B, h*w, d)
    """

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

    The experts are the rows of :data:`hnf.models.experts.EXPERTS` that the config switches on
    (:func:`~hnf.models.experts.active_experts`), held in ``self.experts`` (an ``nn.ModuleDict``
    in gate order): by default sequence (attention + ODE), graph (k-NN ChebConv) and interaction
    (an MLP of the base experts' outputs, present only when at least two base experts are).
    Switched-off parts are not built.

    Args:
        cfg: the model configuration.
        patch_size: this layer's patch size P (with a trunk: the stride of its feature map).
        first: the first (finest) layer has no cross-scale input.
        drop_path: stochastic-depth rate of the sequence expert's blocks.
        trunk_channels: channels of this layer's trunk feature map, when the model has a trunk.

    Shapes:
        - **input:** ``source``: the image (B, C, H, W), the conv stem's feature map
          (B, stem_channels, H/4, W/4), or the trunk's feature map (B, trunk_channels, H/P, W/P);
          ``prev``: the previous layer's tokens (B, N', d) and grid (h', w'), or None
        - **output:** tokens (B, N, d) with N = h*w, row-major over grid (h, w) = (H/P, W/P),
          the grid, and the gate weights (B, N, E) over the E experts
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
        specs = active_experts(cfg)
        num_base = sum(not spec.combines for spec in specs)
        self.combining = frozenset(spec.name for spec in specs if spec.combines)
        self.experts = nn.ModuleDict({spec.name: spec.build(cfg, drop_path, num_base) for spec in specs})
        self.gate = ExpertGate(dim, len(specs), learned=cfg.use_gate)

    def forward(self, source: Tensor, prev: tuple[Tensor, tuple[int, int]] | None = None
                ) -> tuple[Tensor, tuple[int, int], Tensor]:
        x, grid = self.patch_embed(source)
        if self.cross is not None and prev is not None:
            x = self.cross(x, grid, *prev)
        base = [expert(x) for name, expert in self.experts.items() if name not in self.combining]
        combined = [expert(x, base) for name, expert in self.experts.items() if name in self.combining]
        mixed, weights = self.gate(base + combined)
        return mixed, grid, weights
