"""The neural ODE: fixed-step flows of a linear field against the matrix exponential."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

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
