"""Patch embedding with learnable 2-D positional embeddings, interpolated to other image sizes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnf.errors import HnfError


class ImageSizeError(HnfError, ValueError):
    """The image cannot be cut into whole patches."""


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
        if height % p or width % p:
            raise ImageSizeError(
                f"image size {height}x{width} is not divisible by patch size {p}; "
                f"use a size that every patch size of the model divides (e.g. a multiple of 224 "
                f"for scales (16, 28, 32)) or resize/crop the input"
            )
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
