"""SelfAttention: timm's attention with the kernel chosen per call; the same function either way."""

from __future__ import annotations

import torch
from timm.layers import Attention

from hnf.models.attention import SelfAttention, prefers_explicit_attention


def _pair(dim: int = 48, heads: int = 3) -> tuple[Attention, SelfAttention]:
    torch.manual_seed(0)
    reference = Attention(dim, heads, qkv_bias=True)
    reference.fused_attn = True
    ours = SelfAttention(dim, heads, qkv_bias=True)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def test_same_parameters_and_state_dict_keys_as_timm() -> None:
    reference, ours = _pair()
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_fp32_on_cpu_equals_timm_sdpa_in_value_and_gradient() -> None:
    reference, ours = _pair()
    x = torch.randn(4, 49, 48, requires_grad=True)
    y_ref = reference(x)
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    y = ours(x)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    assert not prefers_explicit_attention(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_on_cpu_takes_the_explicit_product_and_matches_fp32() -> None:
    reference, ours = _pair()
    x = torch.randn(4, 16, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert prefers_explicit_attention(x)
        y = ours(x)
    assert not ours.fused_attn
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference(x), rtol=0.05, atol=0.02)
    ours(x)
    assert ours.fused_attn  # back to SDPA once autocast is off
