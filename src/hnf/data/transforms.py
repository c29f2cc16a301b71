"""Training and evaluation pipelines (DESIGN.md section 4), on torchvision transforms v2.

Both start from a ``1xHxW`` uint8 tensor whose short side is already ``resize`` pixels (see
:class:`hnf.data.torch_dataset.MicrographDataset`, which resizes once, so a cached image is small):

* evaluation: centre crop ``img_size``;
* training: random resized crop ``img_size`` (scale 0.5 to 1), horizontal and vertical flips,
  a random multiple of 90 degrees, and with ``"fixed"`` normalisation mild brightness/contrast
  jitter (a per-image standardisation undoes any such affine change of the grey levels, so there
  the jitter would only add clipping at white and cost a quarter of the augmentation time);

then both scale to [0, 1] and normalise, by default per image (``"per_image"``)::

    x' = (x - mean(x)) / (std(x) + 1e-6)        (mean and std over the image's pixels)

which makes the input independent of the microscope's brightness and contrast settings (an
operator's choice, not a property of the material). ``"fixed"`` is the
protocol of DESIGN.md section 4, ``x' = (x - 0.5) / 0.25``, or with a pretrained network its own
grey mean and std (:func:`hnf.models.pretrained.grey_normalisation`); checkpoints record which.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

from hnf.data.sizes import IMG_SIZE, RESIZE, resize_for  # noqa: F401  (re-exported)

MEAN = 0.5
STD = 0.25
NORMALISATIONS = ("per_image", "fixed")
EPS = 1e-6


class RandomRot90(nn.Module):
    """Rotate a ``...xHxW`` tensor by k * 90 degrees, k uniform in {0, 1, 2, 3}.

    Micrographs have no preferred orientation; torchvision has no exact quarter-turn transform
    (``RandomRotation`` interpolates), so this one uses ``torch.rot90``.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        turns = int(torch.randint(0, 4, ()).item())
        return torch.rot90(image, turns, dims=(-2, -1)) if turns else image


def check_normalisation(normalisation: str) -> None:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")


def normalise(image: torch.Tensor, normalisation: str = "per_image", mean: float = MEAN,
              std: float = STD) -> torch.Tensor:
    """A ``CxHxW`` float image in [0, 1], normalised (see the module docstring)."""
    if normalisation == "per_image":
        return (image - image.mean()) / (image.std() + EPS)
    check_normalisation(normalisation)
    return (image - mean) / std


class Normalise(nn.Module):
    """:func:`normalise` as a transform (``mean`` and ``std`` are those of ``"fixed"``)."""

    def __init__(self, normalisation: str = "per_image", mean: float = MEAN, std: float = STD) -> None:
        super().__init__()
        check_normalisation(normalisation)
        self.normalisation, self.mean, self.std = normalisation, mean, std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return normalise(image, self.normalisation, self.mean, self.std)


def _to_normalised_float(normalisation: str, mean: float, std: float) -> list[nn.Module]:
    return [v2.ToDtype(torch.float32, scale=True), Normalise(normalisation, mean, std)]


def build_eval_transform(img_size: int = IMG_SIZE, normalisation: str = "per_image", mean: float = MEAN,
                         std: float = STD) -> v2.Compose:
    """Centre crop, scale to [0, 1], normalise."""
    return v2.Compose([v2.CenterCrop(img_size), *_to_normalised_float(normalisation, mean, std)])


def build_train_transform(img_size: int = IMG_SIZE, normalisation: str = "per_image", mean: float = MEAN,
                          std: float = STD) -> v2.Compose:
    """Random resized crop (scale 0.5-1), flips, quarter turns, jitter (fixed normalisation only),
    normalise."""
    jitter = [v2.ColorJitter(brightness=0.2, contrast=0.2)] if normalisation == "fixed" else []
    return v2.Compose(
        [
            v2.RandomResizedCrop(img_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(),
            *jitter,
            *_to_normalised_float(normalisation, mean, std),
        ]
    )
