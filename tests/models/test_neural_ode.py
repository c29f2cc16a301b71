"""The neural ODE: fixed-step flows against the matrix exponential and against torchdiffeq."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from hnf.models.ode import BiODE, integrate


class LinearField(nn.Module):
    """dh/dt = A h (A acts on the last axis)."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return h @ self.a.T


def _field(dim: int = 6) -> LinearField:
    gen = torch.Generator().manual_seed(1)
    return LinearField(torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5)


# (method, steps, tolerance): global error O(dt^p), p = 4, 1, 2.
SOLVERS = [("rk4", 8, 1e-5), ("midpoint", 64, 1e-3), ("euler", 2000, 2e-3)]


@pytest.mark.parametrize(("method", "steps", "tol"), SOLVERS)
def test_linear_field_flows(method: str, steps: int, tol: float) -> None:
    """Forward flow = expm(A T) h0; the backward flow of the same field undoes it."""
    field, time = _field(), 1.5
    h0 = torch.randn(4, 6, dtype=torch.float64)
    with torch.no_grad():
        h_t = integrate(field, h0, 0.0, time, method=method, steps=steps)
        back = integrate(field, h_t, time, 0.0, method=method, steps=steps)
        want = h0 @ torch.linalg.matrix_exp(field.a * time).T
    assert (h_t - want).abs().max() < tol * want.abs().max()
    assert (back - h0).abs().max() < tol * h0.abs().max()


def test_adjoint_gradient_matches_direct_gradient() -> None:
    """The adjoint solves its own ODE backward, so the two agree up to the solver's error."""
    field = _field()
    h0 = torch.randn(3, 6, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        field.zero_grad()
        integrate(field, h0, 0.0, 1.0, steps=16, adjoint=adjoint).pow(2).sum().backward()
        grads.append(field.a.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_bidirectional_ode_residual_shape_and_gradients() -> None:
    ode = BiODE(dim=8, steps=2)
    x = torch.randn(2, 5, 8)
    y = ode(x)
    y.square().mean().backward()
    assert y.shape == x.shape
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ode.parameters())


class TimeField(nn.Module):
    """A nonlinear, time-dependent field: f(t, h) = tanh(h W + t b)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(2)
        self.w = nn.Parameter(torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5)
        self.b = nn.Parameter(torch.randn(dim, generator=gen, dtype=torch.float64))

    def forward(self, t: float | Tensor, h: Tensor) -> Tensor:
        return torch.tanh(h @ self.w + t * self.b)


@pytest.mark.parametrize("method", ["rk4", "euler", "midpoint"])
@pytest.mark.parametrize(("t0", "t1", "steps"), [(0.0, 1.0, 1), (0.0, 1.5, 3), (1.0, 0.0, 2)])
def test_solver_matches_torchdiffeq(method: str, t0: float, t1: float, steps: int) -> None:
    """Same states and same gradients (input and parameters) as ``torchdiffeq.odeint``."""
    field = TimeField(5)
    h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([t0, t1], dtype=torch.float64)
    reference = odeint(field, h0, t, method=method, options={"step_size": abs(t1 - t0) / steps})[-1]
    ours = integrate(field, h0, t0, t1, method=method, steps=steps)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(out.pow(2).sum(), [h0, field.w, field.b])
             for out in (ours, reference)]
    for mine, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_bidirectional_ode_traces_without_graph_breaks() -> None:
    """No host synchronisation in the flows: ``torch.compile`` sees one graph."""
    ode = BiODE(dim=8, steps=2)
    explanation = torch._dynamo.explain(ode)(torch.randn(2, 5, 8))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
