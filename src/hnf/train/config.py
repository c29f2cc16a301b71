"""What defines a training run, as plain data (no torch): ``run_dir/config.json`` is its JSON.

Kept apart from :mod:`hnf.train.loop` so that the command line can build and document it
without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hnf.data.sizes import resize_for
from hnf.errors import HnfError

TRUNK_BN = ("train", "frozen")


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``run_dir/config.json``.

    ``resize`` (the short side images are resized to before the ``img_size`` crop) is derived
    here when not given: ``resize_for(img_size)``, i.e. ``round(img_size * 8 / 7)`` (128 for 112
    px), and saved as that number. ``dataclasses.replace`` passes the saved number on, so a copy
    with another ``img_size`` is made with ``resize=None`` to derive it again.
    """

    data: str
    out: str = "runs/run"
    model: str = "hnf_small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    img_size: int = 224
    resize: int | None = None  # the short side before the crop; None: resize_for(img_size)
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    split: str | None = None
    crop_band: bool = True
    # "auto": a pretrained model's own normalisation (its grey mean and std), else "per_image"
    normalisation: str = "auto"
    class_balanced: bool = False
    precision: str = "auto"
    device: str = "auto"
    workers: int = 0
    # torch.compile the training forward and backward (validation and test stay eager): a one-off
    # compilation of minutes on a CPU for a faster step (bench/bench_ode_solver.py)
    compile: bool = False
    tta_views: int = 1  # test-side evaluation averaged over 1, 4 or 8 symmetries (hnf.tta)
    # seconds of training, validation and checkpoints to fit: the epochs that fit, planned after
    # the warm-up and shortened as the pace drifts, are written back into ``epochs`` (hnf.train.budget)
    time_budget_s: float | None = None
    # a pretrained trunk (hnf_lite0's, or a pretrained baseline's all but its classifier):
    # its learning rate as a multiple of ``lr``; epochs it stays frozen at first (batch norm in
    # evaluation mode, no gradients); "frozen" keeps its batch-norm statistics fixed throughout
    trunk_lr_factor: float = 0.1
    trunk_frozen_epochs: int = 0
    trunk_bn: str = "train"
    # fit only a linear classifier on the frozen trunk's pooled features, by logistic regression
    # (hnf.train.probe), instead of training by gradient descent
    linear_probe: bool = False
    # weight of the gate-balance regulariser E * sum_e mean(w_e)^2 - 1 in the loss (HNF models;
    # 0: off; its effect on accuracy has not been measured yet)
    balance_weight: float = 0.0
    # keep at most this many training images per class (a seeded draw: the low-data regime)
    train_per_class: int | None = None
    # nanometres per pixel that images stating a pixel size are resampled to before cropping
    # (hnf.data.torch_dataset.resize_for_model); None: every image's short side resized to ``resize``
    pixel_size_nm: float | None = None

    def __post_init__(self) -> None:
        if self.resize is None:
            self.resize = resize_for(self.img_size)
        if self.pixel_size_nm is not None and not self.pixel_size_nm > 0:
            raise HnfError(f"pixel_size_nm (--pixel-size) must be a positive number of nanometres, got {self.pixel_size_nm}")
