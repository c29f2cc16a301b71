"""Image sizes of the pipeline (no torch): the crop fed to a model and the resize before it."""

from __future__ import annotations

RESIZE = 256
IMG_SIZE = 224


def resize_for(img_size: int) -> int:
    """The short side images are resized to before a crop of ``img_size``: ``round(img_size * 8 / 7)``
    (256 for 224), so the evaluation's centre crop keeps 7/8 of each side."""
    return round(img_size * 8 / 7)
