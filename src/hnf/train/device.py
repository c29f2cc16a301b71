"""Where and in which precision a run computes."""

from __future__ import annotations

import torch

from hnf.errors import HnfError


def available_devices() -> list[str]:
    """The devices this machine can compute on: ``cpu`` and ``cuda:N`` for each visible GPU."""
    return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; any torch device string is accepted.

    Raises:
        HnfError: one line naming the device and the devices that are available, for an unknown
            device or a GPU this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    available = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HnfError(f"unknown device {name!r}; available here: {available}") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise HnfError(f"device {name!r} is not available on this machine; available here: {available}")
    if device.type not in ("cpu", "cuda"):
        raise HnfError(f"device {name!r} is not supported; available here: {available}")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked, or with ``auto`` where the hardware computes bf16 natively (CUDA with
    bf16, CPUs with AVX512-BF16/AMX); None means fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise HnfError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
