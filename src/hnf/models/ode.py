"""Bidirectional neural ODE on ``torchdiffeq``: a forward flow 0 -> T and a backward flow T -> 0."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint


def integrate(
    func: nn.Module,
    h0: Tensor,
    t0: float,
    t1: float,
    method: str = "rk4",
    steps: int = 1,
    adjoint: bool = False,
) -> Tensor:
    """State at t1 of dh/dt = func(t, h), h(t0) = h0, with ``steps`` fixed steps of a
    ``torchdiffeq`` solver (rk4: its 3/8-rule variant, euler, midpoint); t1 < t0 integrates
    backward in time. ``adjoint`` back-propagates by solving the adjoint ODE instead of through
    the solver's operations."""
    t = torch.tensor([t0, t1], dtype=torch.float32, device=h0.device)
    options = {"step_size": abs(t1 - t0) / steps}
    if adjoint:
        params = tuple(p for p in func.parameters() if p.requires_grad)
        return odeint_adjoint(func, h0, t, method=method, options=options,
                              adjoint_options=options, adjoint_params=params)[-1]
    return odeint(func, h0, t, method=method, options=options)[-1]


class VectorField(nn.Module):
    """Token-wise MLP field conditioned on time: f(t, h) = W_2 GELU(W_1 h + t w_t + b_1) + b_2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.time = nn.Parameter(torch.zeros(hidden))
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.normal_(self.time, std=0.02)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return self.fc2(torch.nn.functional.gelu(self.fc1(h) + t * self.time)).to(h.dtype)


class BiODE(nn.Module):
    """Bidirectional ODE refinement with residual: for z = LN(x),

        h_f = z + int_0^T f(t, h) dt   (forward flow of field f)
        h_b = z - int_0^T g(t, h) dt   (backward flow of field g, from t=T to t=0)
        y   = x + W [h_f, h_b]

    Both flows start from the same state; fixed-step solver with ``steps`` steps per flow.
    """

    def __init__(self, dim: int, hidden_ratio: float = 1.0, time: float = 1.0,
                 method: str = "rk4", steps: int = 1, adjoint: bool = False) -> None:
        super().__init__()
        hidden = max(1, int(dim * hidden_ratio))
        self.norm = nn.LayerNorm(dim)
        self.forward_field = VectorField(dim, hidden)
        self.backward_field = VectorField(dim, hidden)
        self.proj = nn.Linear(2 * dim, dim)
        self.time, self.method, self.steps, self.adjoint = time, method, steps, adjoint

    def forward(self, x: Tensor) -> Tensor:
        z = self.norm(x)
        solve = dict(method=self.method, steps=self.steps, adjoint=self.adjoint)
        h_f = integrate(self.forward_field, z, 0.0, self.time, **solve)
        h_b = integrate(self.backward_field, z, self.time, 0.0, **solve)
        return x + self.proj(torch.cat([h_f, h_b], dim=-1))
