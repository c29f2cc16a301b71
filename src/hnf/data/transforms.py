"""Training and evaluation pipelines (DESIGN.md section 4), on torchvision transforms v2.

Both start from a ``1xHxW`` uint8 tensor whose short side is already ``resize`` pixels (see
:class:`hnf.data.torch_dataset.MicrographDataset`, which resizes once, so a cached image is small):

* evaluation: centre crop ``img_size``;
* training: random resized crop ``img_size`` (scale 0.5 to 1), horizontal and vertical flips,
  a random multiple of 90 degrees, mild brightness/contrast jitter;

then both scale to [0, 1] and normalise with mean 0.5 and std 0.25: ``x' = (x - 0.5) / 0.25``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

MEAN = 0.5
STD = 0.25
RESIZE = 256
IMG_SIZE = 224


class RandomRot90(nn.Module):
    """Rotate a ``...xHxW`` tensor by k * 90 degrees, k uniform in {0, 1, 2, 3}.

    Micrographs have no preferred orientation; torchvision has no exact quarter-turn transform
    (``RandomRotation`` interpolates), so this one uses ``torch.rot90``.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        turns = int(torch.randint(0, 4, ()).item())
        return torch.rot90(image, turns, dims=(-2, -1)) if turns else image


def _to_normalised_float(channels: int) -> list[nn.Module]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize([MEAN] * channels, [STD] * channels)]


def build_eval_transform(img_size: int = IMG_SIZE, channels: int = 1) -> v2.Compose:
    """Centre crop, scale to [0, 1], normalise."""
    return v2.Compose([v2.CenterCrop(img_size), *_to_normalised_float(channels)])


def build_train_transform(img_size: int = IMG_SIZE, channels: int = 1) -> v2.Compose:
    """Random resized crop (scale 0.5-1), flips, quarter turns, jitter, normalise."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(img_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            *_to_normalised_float(channels),
        ]
    )
