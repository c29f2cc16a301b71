"""Test-time augmentation over the symmetries of a micrograph.

A micrograph has no preferred orientation: the stage can be rotated and the image mirrored
without changing the material, and training already draws quarter turns and flips. At test time
the prediction can therefore average over those symmetries, the dihedral group D4 of the square:

    p(y | x) = 1/V sum_{v < V} softmax(f(g_v x))_y

with g_0 = identity, g_1..g_3 the quarter turns (``views=4``), and g_4..g_7 the same four after
a horizontal flip (``views=8``, all of D4). The V views of a batch go through the model as one
batch of V * B images.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hnf.errors import HnfError

TTA_VIEWS = (1, 4, 8)
"""Allowed view counts: identity only, the four quarter turns, all eight symmetries of D4."""


class ViewsError(HnfError, ValueError):
    """An impossible test-time augmentation request."""


def check_views(views: int) -> None:
    if views not in TTA_VIEWS:
        raise ViewsError(f"test-time augmentation views must be one of {TTA_VIEWS} "
                         f"(identity, quarter turns, quarter turns and flips), got {views}")


def dihedral_views(images: Tensor, views: int) -> Tensor:
    """The first ``views`` symmetries g_v of square images (B, C, S, S), stacked as (V*B, C, S, S)
    in view-major order (g_0 of every image, then g_1 of every image, ...)."""
    check_views(views)
    if views == 1:  # no copy on the plain path (validation every epoch, plain predictions)
        return images
    if images.shape[-1] != images.shape[-2]:
        raise ViewsError(f"test-time augmentation needs square inputs, got {tuple(images.shape[-2:])}")
    sources = [images, images.flip(-1)][: views // 4]
    return torch.cat([torch.rot90(source, k, dims=(-2, -1)) for source in sources for k in range(4)])


def view_logits(model: nn.Module, images: Tensor, views: int = 1) -> Tensor:
    """Logits (V, B, num_classes) of the model on each of the ``views`` symmetries of the batch."""
    logits = model(dihedral_views(images, views))
    return logits.view(views, images.shape[0], -1)


def average_probabilities(logits: Tensor) -> Tensor:
    """1/V sum_v softmax(logits_v) over the leading view axis, in float32: (B, num_classes)."""
    return logits.float().softmax(-1).mean(0)
