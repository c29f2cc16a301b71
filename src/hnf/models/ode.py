"""Bidirectional neural ODE: a forward flow 0 -> T and a backward flow T -> 0.

The flows use fixed-step Runge-Kutta solvers written here, with the step formulas of
``torchdiffeq``'s ``euler``, ``midpoint`` and ``rk4`` (tests check equality against it). They
exist because ``torchdiffeq.odeint`` reads its time grid back to the host (``.item()``) on every
call: a CUDA synchronisation per flow, and a graph break that keeps ``torch.compile`` from
tracing the model. The adjoint method stays on ``torchdiffeq.odeint_adjoint``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchdiffeq import odeint_adjoint

Field = Callable[[float, Tensor], Tensor]


def _euler_step(func: Field, t: float, dt: float, h: Tensor) -> Tensor:
    """h + dt f(t, h)."""
    return h + dt * func(t, h)


def _midpoint_step(func: Field, t: float, dt: float, h: Tensor) -> Tensor:
    """h + dt f(t + dt/2, h + dt/2 f(t, h))."""
    k1 = func(t, h)
    return h + dt * func(t + 0.5 * dt, h + k1 * (0.5 * dt))


def _rk4_step(func: Field, t: float, dt: float, h: Tensor) -> Tensor:
    """Kutta's 3/8 rule (``torchdiffeq``'s rk4):

        k1 = f(t, h)
        k2 = f(t + dt/3, h + dt k1/3)
        k3 = f(t + 2dt/3, h + dt (k2 - k1/3))
        k4 = f(t + dt, h + dt (k1 - k2 + k3))
        h' = h + dt (k1 + 3 k2 + 3 k3 + k4) / 8
    """
    k1 = func(t, h)
    k2 = func(t + dt / 3, h + dt * k1 / 3)
    k3 = func(t + 2 * dt / 3, h + dt * (k2 - k1 / 3))
    k4 = func(t + dt, h + dt * (k1 - k2 + k3))
    return h + (k1 + 3 * (k2 + k3) + k4) * (dt * 0.125)


STEPPERS: dict[str, Callable[[Field, float, float, Tensor], Tensor]] = {
    "rk4": _rk4_step, "euler": _euler_step, "midpoint": _midpoint_step}


def integrate(
    func: nn.Module,
    h0: Tensor,
    t0: float,
    t1: float,
    method: str = "rk4",
    steps: int = 1,
    adjoint: bool = False,
) -> Tensor:
    """State at t1 of dh/dt = func(t, h), h(t0) = h0, with ``steps`` equal steps of
    dt = (t1 - t0) / steps (rk4: the 3/8 rule, euler, midpoint); t1 < t0 integrates backward in
    time. Times reach ``func`` as Python floats. ``adjoint`` back-propagates by solving the
    adjoint ODE (``torchdiffeq``) instead of through the solver's operations."""
    if adjoint:
        t = torch.tensor([t0, t1], dtype=torch.float32, device=h0.device)
        options = {"step_size": abs(t1 - t0) / steps}
        params = tuple(p for p in func.parameters() if p.requires_grad)
        return odeint_adjoint(func, h0, t, method=method, options=options,
                              adjoint_options=options, adjoint_params=params)[-1]
    step, dt, h = STEPPERS[method], (t1 - t0) / steps, h0
    for i in range(steps):
        h = step(func, t0 + i * dt, dt, h)
    return h


class VectorField(nn.Module):
    """Token-wise MLP field conditioned on time: f(t, h) = W_2 GELU(W_1 h + t w_t + b_1) + b_2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.time = nn.Parameter(torch.zeros(hidden))
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.normal_(self.time, std=0.02)

    def forward(self, t: float | Tensor, h: Tensor) -> Tensor:
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
