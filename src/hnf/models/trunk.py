"""A pretrained convolutional trunk under HNF (DESIGN.md 2.5): its feature maps become the tokens.

:class:`Trunk` wraps a timm model built with ``features_only`` and returns its feature maps at
the strides the HNF layers ask for (EfficientNet-Lite0 at 224 px: strides 8, 16 and 32 give 28x28,
14x14 and 7x7 maps of 40, 112 and 320 channels: the design's inverted pyramid, fine to coarse).
:class:`FeatureTokens` turns one map into the tokens of one HNF layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnf.models.config import ConfigError
from hnf.models.pretrained import load_weights


def trunk_strides(architecture: str) -> tuple[int, ...]:
    """The strides at which ``architecture`` offers feature maps (timm's ``feature_info``)."""
    import timm

    return tuple(timm.create_model(architecture, pretrained=False, features_only=True).feature_info.reduction())


class Trunk(nn.Module):
    """The feature maps of a timm model at ``strides``.

    Args:
        architecture: a timm model name that supports ``features_only`` (CNNs do).
        strides: one per HNF layer, fine to coarse, each one the model offers.
        in_chans: input channels (1: the first convolution's RGB kernels folded, see
            :mod:`hnf.models.pretrained`).
        weights: weight source (:mod:`hnf.models.pretrained`); ``"none"`` leaves it random (a
            checkpoint brings its own).

    Shapes:
        input (B, in_chans, H, W), H and W divisible by the largest stride;
        output: a list of (B, C_s, H / s, W / s), one per stride.
    """

    def __init__(self, architecture: str, strides: tuple[int, ...], in_chans: int, weights: str | None) -> None:
        super().__init__()
        import timm

        if not timm.is_model(architecture):
            raise ConfigError(f"trunk {architecture!r} is not a timm model name")
        offered = trunk_strides(architecture)
        unknown = [s for s in strides if s not in offered]
        if unknown:
            raise ConfigError(f"trunk {architecture} has feature maps at strides {list(offered)}, not at "
                              f"{unknown}; set scales to strides it offers")
        indices = tuple(offered.index(s) for s in strides)
        self.architecture = architecture
        self.body = timm.create_model(architecture, pretrained=False, features_only=True, out_indices=indices,
                                      in_chans=in_chans)
        load_weights(self.body, architecture, weights or "none", in_chans)
        self.channels: tuple[int, ...] = tuple(self.body.feature_info.channels())
        self.strides = tuple(strides)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.body(x)


class FeatureTokens(nn.Module):
    """Tokens of one HNF layer from one trunk feature map: ``LN(W f) + pos``.

    A 1x1 projection of the C channels to width d (a linear map per position), layer-normalised
    (the trunk's maps differ in scale from stage to stage), plus a learnable 2-D positional
    embedding for the configured grid, resampled bicubically for other sizes.

    Shapes:
        input (B, C, h, w) -> tokens (B, h * w, d) row-major, and the grid (h, w).
    """

    def __init__(self, channels: int, dim: int, grid: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim)
        self.pos = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02)

    def forward(self, feature_map: Tensor) -> tuple[Tensor, tuple[int, int]]:
        grid = (feature_map.shape[-2], feature_map.shape[-1])
        tokens = self.norm(self.proj(feature_map.flatten(2).transpose(1, 2)))
        pos = self.pos
        if pos.shape[-2:] != grid:
            pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return tokens + pos.flatten(2).transpose(1, 2).to(tokens.dtype), grid
