"""Mixture-of-experts gate: per-token softmax weights over the experts of an HNF layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ExpertGate(nn.Module):
    """The fusion of an HNF layer's experts: w = softmax(W [LN(y_1), ..., LN(y_E)] + b) per token,
    output sum_e w_e y_e (one LayerNorm shared by the experts).

    With ``learned=False`` (or a single expert) there are no parameters and w_e = 1/E (uniform
    average).

    Args:
        dim: token width d.
        num_experts: number E of experts mixed.
        learned: learn the gate (else the uniform average).

    Shapes:
        - **input:** ``experts``: E tensors y_e (B, N, d), in gate order
        - **output:** mixed tokens (B, N, d) and the weights w (B, N, E), float32, summing to 1
          over E
    """

    def __init__(self, dim: int, num_experts: int, learned: bool = True) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.learned = learned and num_experts > 1
        if self.learned:
            self.norm = nn.LayerNorm(dim)
            self.proj = nn.Linear(num_experts * dim, num_experts)

    def forward(self, experts: list[Tensor]) -> tuple[Tensor, Tensor]:
        stacked = torch.stack(experts, dim=-1)  # (B, N, d, E)
        if self.learned:
            logits = self.proj(torch.cat([self.norm(y) for y in experts], dim=-1))
            weights = logits.float().softmax(dim=-1)
        else:
            shape = (*stacked.shape[:2], self.num_experts)
            weights = stacked.new_full(shape, 1.0 / self.num_experts, dtype=torch.float32)
        mixed = (stacked * weights.to(stacked.dtype).unsqueeze(-2)).sum(-1)
        return mixed, weights


def balance_loss(weights: Tensor) -> Tensor:
    """E * sum_e mean(w_e)^2 - 1 over all tokens: 0 when the experts get equal mean weight,
    up to E - 1 when one expert takes every token."""
    importance = weights.reshape(-1, weights.shape[-1]).mean(0)
    return importance.shape[0] * importance.pow(2).sum() - 1
