"""A PyTorch dataset of micrographs: decode, cut the band, resize once, cache, transform.

Resizing is to a short side of ``resize`` pixels (:func:`resize_short_side`), or with a common
physical scale ``pixel_size_nm`` to that many nanometres per pixel for images whose metadata states
a pixel size (:func:`resize_to_pixel_size`), so every such image reaches the model at one scale.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from hnf.data.band import Band
from hnf.data.dataset import Sample
from hnf.data.reading import read_micrograph
from hnf.data.transforms import RESIZE


MAX_ASPECT = 4.0
"""Longest side kept, as a multiple of the short side, before resizing: an elongated image is
centre-cropped to this aspect ratio first, so the resized image has at most
``size * size * MAX_ASPECT`` pixels whatever the file's shape (the evaluation's centre crop lies
well inside the kept part)."""


def centre_crop_aspect(grey: np.ndarray, max_aspect: float = MAX_ASPECT) -> np.ndarray:
    """The centre ``short x min(long, floor(max_aspect * short))`` part of an HxW image (a view)."""
    height, width = grey.shape
    limit = int(max_aspect * min(height, width))
    if height > limit:
        top = (height - limit) // 2
        return grey[top : top + limit]
    if width > limit:
        left = (width - limit) // 2
        return grey[:, left : left + limit]
    return grey


def _to_uint8(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor[0].clamp(0, 1) * 255).round().to(torch.uint8)


def resize_to_pixel_size(grey: np.ndarray, pixel_size_m: float, pixel_height_m: float | None, target_nm: float,
                         size: int) -> torch.Tensor | None:
    """An HxW float image in [0, 1] whose pixels are ``pixel_size_m`` wide and ``pixel_height_m``
    (None: the same) tall, resampled to ``target_nm`` nanometres per pixel (bilinear,
    antialiased): its centre ``size x min(long, MAX_ASPECT * size)`` window at that scale, as a
    ``1xH'xW'`` uint8 tensor with short side ``size`` (the shape :func:`resize_short_side` gives).

    Only the source pixels of that window are resampled, so memory follows the output whatever the
    enlargement. None when the image covers fewer than ``size`` pixels at ``target_nm`` on its
    short side (it cannot fill the window at that scale).
    """
    if not (target_nm > 0 and pixel_size_m > 0):
        raise ValueError(f"pixel sizes must be positive, got target {target_nm} nm and pixel {pixel_size_m} m")
    height, width = grey.shape
    scale_x = pixel_size_m * 1e9 / target_nm  # output pixels per source pixel
    scale_y = (pixel_height_m or pixel_size_m) * 1e9 / target_nm
    out_h, out_w = height * scale_y, width * scale_x
    if min(out_h, out_w) < size:
        return None
    limit = MAX_ASPECT * size
    win_h, win_w = (size, int(min(out_w, limit))) if out_h <= out_w else (int(min(out_h, limit)), size)
    src_h = min(height, max(1, round(win_h / scale_y)))
    src_w = min(width, max(1, round(win_w / scale_x)))
    top, left = (height - src_h) // 2, (width - src_w) // 2
    window = np.ascontiguousarray(grey[top : top + src_h, left : left + src_w], dtype=np.float32)
    tensor = torch.from_numpy(window)[None, None]
    if (src_h, src_w) != (win_h, win_w):
        tensor = F.interpolate(tensor, size=(win_h, win_w), mode="bilinear", antialias=True, align_corners=False)
    return _to_uint8(tensor)


def resize_for_model(grey: np.ndarray, size: int, target_nm: float | None = None,
                     pixel_size_m: float | None = None, pixel_height_m: float | None = None) -> torch.Tensor:
    """:func:`resize_to_pixel_size` when ``target_nm`` and the image's ``pixel_size_m`` are both
    known and the image fills the window at that scale, else :func:`resize_short_side` (the image
    used as it is). Training, evaluation and prediction all prepare images with this."""
    if target_nm is not None and pixel_size_m is not None:
        image = resize_to_pixel_size(grey, pixel_size_m, pixel_height_m, target_nm, size)
        if image is not None:
            return image
    return resize_short_side(grey, size)


def resize_short_side(grey: np.ndarray, size: int) -> torch.Tensor:
    """Float HxW in [0, 1] to a ``1xH'xW'`` uint8 tensor whose short side is ``size`` (antialiased),
    after :func:`centre_crop_aspect`: ``H'`` and ``W'`` are at most ``MAX_ASPECT * size``."""
    grey = centre_crop_aspect(grey)
    tensor = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))[None, None]
    height, width = grey.shape
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    if new_size != (height, width):
        tensor = F.interpolate(tensor, size=new_size, mode="bilinear", antialias=True, align_corners=False)
    return _to_uint8(tensor)


class MicrographDataset(Dataset):
    """Samples as ``(image, class_index)`` pairs.

    Each image is decoded, its information band cut away (``crop_band``), resized so its short
    side is ``resize`` and kept as uint8; with ``cache=True`` that tensor is kept in memory so
    later epochs skip decoding (about ``resize**2 * aspect`` bytes per image, 64 KiB at 256x256).
    With ``pixel_size_nm`` images whose metadata states a pixel size are resampled to that many
    nanometres per pixel instead (:func:`resize_for_model`). ``bands`` records, per index, the band
    found on first decode.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        crop_band: bool = True,
        resize: int = RESIZE,
        cache: bool = False,
        pixel_size_nm: float | None = None,
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.class_to_index = {name: index for index, name in enumerate(self.classes)}
        unknown = sorted({s.label for s in self.samples} - set(self.class_to_index))
        if unknown:
            raise ValueError(f"labels not among the classes {self.classes}: {', '.join(unknown)}")
        self.transform = transform
        self.crop_band = crop_band
        self.resize = resize
        self.cache = cache
        self.pixel_size_nm = pixel_size_nm
        self._cached: dict[int, torch.Tensor] = {}
        self.bands: dict[int, Band | None] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """The decoded, band-cut, resized uint8 image (from the cache when enabled)."""
        if index in self._cached:
            return self._cached[index]
        micrograph = read_micrograph(self.samples[index].path, crop_band=self.crop_band)
        self.bands[index] = micrograph.band
        meta = micrograph.metadata
        image = resize_for_model(micrograph.grey, self.resize, self.pixel_size_nm, meta and meta.pixel_size_m,
                                 meta and meta.pixel_height_m)
        if self.cache:
            self._cached[index] = image
        return image

    def preload(self, threads: int | None = None) -> None:
        """Fill the cache now, decoding on ``threads`` threads (default: one per CPU; decoding
        and band detection release the GIL for most of their time), so that the first epoch
        runs at the pace of the later ones (a time-budgeted run plans with it)."""
        if not self.cache:
            raise ValueError("preload needs cache=True")
        missing = [index for index in range(len(self.samples)) if index not in self._cached]
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
            list(pool.map(self.load, missing))

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """``item`` is an index, or ``(index, seed)``: then the random transform runs under that
        seed, so an image's augmentation depends only on the seed, not on which process or
        worker draws it, or in which order (exact resume, DDP equal to one process)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = self.load(index)
        if self.transform is not None:
            if seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    # The CPU generator only (the transforms draw from nothing else):
                    # torch.manual_seed also queues a lazy CUDA seeding with a formatted stack
                    # trace when CUDA is not initialised, 2 ms a call inside the training loop.
                    torch.default_generator.manual_seed(seed)
                    image = self.transform(image)
        return image, self.class_to_index[self.samples[index].label]
