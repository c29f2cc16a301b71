"""Multi-head self-attention that picks its kernel for the device and precision of each call.

timm's :class:`~timm.layers.Attention` computes, per head of width d_h::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_h)) V

either with PyTorch's fused ``scaled_dot_product_attention`` (SDPA) or as the explicit product
(two batched matrix products and a softmax). The two are the same function; their speed is not.
On the CPU under bf16 autocast, SDPA's flash kernel is slow in the backward pass for the short
sequences of HNF's scales (16 to 196 tokens), and the explicit product is faster there
(``bench/bench_attention.py``, BENCHMARKS.md). In fp32 on the CPU the two are level, and on a
GPU SDPA is the one to use, so only that one case changes.
"""

from __future__ import annotations

import torch
from timm.layers import Attention
from torch import Tensor


def prefers_explicit_attention(x: Tensor) -> bool:
    """True on the CPU under bf16 autocast, where the explicit product beats SDPA."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class SelfAttention(Attention):
    """timm's attention (same parameters and state-dict keys), with the kernel chosen per call by
    :func:`prefers_explicit_attention`; ``Block(..., attn_layer=SelfAttention)`` uses it.

    Shapes:
        - **input:** tokens x (B, N, d)
        - **output:** tokens (B, N, d)
    """

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        self.fused_attn = not prefers_explicit_attention(x)
        return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
