"""Where and in which precision a run computes."""

from __future__ import annotations

import torch

from hnf.errors import HnfError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise HnfError(f"unknown device {name!r} ({err})") from None


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
