"""Patch embedding with learnable 2-D positional embeddings, interpolated to other image sizes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnf.errors import HnfError
from hnf.models.config import CONV_STEM_STRIDE


class ImageSizeError(HnfError, ValueError):
    """The image cannot be cut into whole patches."""


def check_image_size(height: int, width: int, scales: tuple[int, ...]) -> None:
    """Raise :class:`ImageSizeError` unless every patch size in ``scales`` divides the image."""
    for p in scales:
        if height % p or width % p:
            raise ImageSizeError(
                f"image size {height}x{width} is not divisible by patch size {p}; "
                f"use a size that every patch size of the model divides (e.g. a multiple of 224 "
                f"for scales (16, 28, 32)) or resize/crop the input"
            )


class ConvStem(nn.Module):
    """Convolutional stem shared by all scales ("early convolutions", Xiao et al., NeurIPS 2021):
    two 3x3 convolutions of stride 2, each followed by BatchNorm and GELU, so the output has
    stride 4 and ``channels`` channels:

        s = GELU(BN(conv_{3x3,/2}(GELU(BN(conv_{3x3,/2}(x))))))

    Each scale then embeds patches of P/4 x P/4 stem cells instead of P x P raw pixels: a token
    still covers a P x P field of the image, but starts from local edge and texture filters
    rather than from a single linear map of raw pixels, which makes a small transformer learn
    far faster from few images.
    """

    stride = CONV_STEM_STRIDE

    def __init__(self, in_chans: int, channels: int) -> None:
        super().__init__()
        mid = channels // 2
        self.convs = nn.Sequential(
            nn.Conv2d(in_chans, mid, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(mid),
            nn.GELU(),
            nn.Conv2d(mid, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.GELU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


class PatchEmbed(nn.Module):
    """Tokens of an image at one patch size P: ``conv_{k=s=P}(x) + pos``.

    The convolution with kernel = stride = P is computed as what it is, one GEMM of the
    non-overlapping P x P patches with the (d, C*P*P) weight: on CPU, bf16 ``conv2d`` falls back
    to a slow kernel (12% of the bf16 inference time of ``hnf_small``), the GEMM does not.

    The positional embedding is a learnable (d, H/P, W/P) grid for the configured image size; for
    another size (divisible by P) it is resampled bicubically to the new grid.

    Returns tokens (B, N, d) and the grid (h, w), N = h * w, row-major.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, img_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        grid = img_size // patch_size
        self.pos = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        height, width = x.shape[-2:]
        p = self.patch_size
        check_image_size(height, width, (p,))
        batch, chans = x.shape[:2]
        grid = (height // p, width // p)
        patches = (x.reshape(batch, chans, grid[0], p, grid[1], p).permute(0, 2, 4, 1, 3, 5)
                   .reshape(batch, grid[0] * grid[1], chans * p * p))
        tokens = F.linear(patches, self.proj.weight.reshape(self.proj.out_channels, -1),
                          self.proj.bias)
        pos = self.pos
        if pos.shape[-2:] != grid:
            pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return tokens + pos.flatten(2).transpose(1, 2).to(tokens.dtype), grid
