"""Area pooling of a token grid onto another grid, the resampling of the cross-scale exchange.

Adaptive average pooling of an ``H x W`` grid onto ``h x w`` averages, for output cell (i, j),
the input window of rows ``floor(i H / h)`` to ``ceil((i + 1) H / h)`` (exclusive) and of
columns ``floor(j W / w)`` to ``ceil((j + 1) W / w)``. The window average is separable, so it is
also ``P_h X P_w^T`` with the constant pooling matrices of :func:`pool_matrix`; that form traces
to ONNX (two ``MatMul``), where the exporter has no adaptive pooling onto a grid that does not
divide the input's (14x14 onto 8x8, 8x8 onto 7x7 in the design's pyramid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pool_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32,
                device: torch.device | None = None) -> Tensor:
    """The (n_out, n_in) matrix of 1-D adaptive average pooling.

    Row i holds ``1 / (e_i - s_i)`` on the columns ``s_i <= j < e_i`` with
    ``s_i = floor(i n_in / n_out)`` and ``e_i = ceil((i + 1) n_in / n_out)``, zeros elsewhere.
    """
    rows = torch.arange(n_out, device=device)
    start = (rows * n_in) // n_out
    end = -((-(rows + 1) * n_in) // n_out)
    cols = torch.arange(n_in, device=device)
    inside = (cols >= start.unsqueeze(1)) & (cols < end.unsqueeze(1))
    return (inside.float() / (end - start).unsqueeze(1).float()).to(dtype)


def area_pool_matrices(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Adaptive average pooling of ``x`` (..., H, W) onto ``size`` = (h, w) as ``P_h X P_w^T``
    (:func:`pool_matrix`); equal to ``F.adaptive_avg_pool2d`` up to rounding. Sizes are read as
    Python integers, so a trace records the matrices as constants."""
    rows, cols = (int(v) for v in size)
    left = pool_matrix(int(x.shape[-2]), rows, x.dtype, x.device)
    right = pool_matrix(int(x.shape[-1]), cols, x.dtype, x.device)
    return left @ x @ right.T


def area_pool(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Adaptive average pooling of ``x`` (B, C, H, W) onto ``size`` = (h, w): (B, C, h, w).

    Runs PyTorch's kernel (``F.adaptive_avg_pool2d``), and the matrix form of
    :func:`area_pool_matrices` while a trace (the ONNX export) records the model: the same windows
    and weights, so the exported graph computes what the model computes.
    """
    if torch.jit.is_tracing():
        return area_pool_matrices(x, size)
    return F.adaptive_avg_pool2d(x, size)
