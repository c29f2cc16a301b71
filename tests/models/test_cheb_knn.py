"""The vision graph: k-NN adjacency and the dense Chebyshev convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hnf.models.graph import ChebConv, GraphExpert, knn_graph, scaled_laplacian

pyg = pytest.importorskip("torch_geometric.nn")


def _random_graph(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    upper = (torch.rand(n, n, generator=gen) < p).float().triu(1)
    return upper + upper.T


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_dense_cheb_conv_equals_pyg(k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    batch, n, c_in, c_out = 3, 17, 8, 5
    adj = torch.stack([_random_graph(n, p, gen) for p in (0.1, 0.3, 0.6)])
    adj[0, 3] = adj[0, :, 3] = 0  # an isolated node
    x = torch.randn(batch, n, c_in, generator=gen)
    ours = ChebConv(c_in, c_out, k)
    ref = pyg.ChebConv(c_in, c_out, K=k, normalization="sym")
    with torch.no_grad():
        for j, lin in enumerate(ref.lins):
            lin.weight.copy_(ours.lin.weight[:, j * c_in:(j + 1) * c_in])
        ref.bias.copy_(ours.lin.bias)
    got = ours(x, scaled_laplacian(adj))
    for b in range(batch):
        edge_index = adj[b].nonzero().T
        want = ref(x[b], edge_index, lambda_max=2.0)
        torch.testing.assert_close(got[b], want, atol=1e-5, rtol=1e-5)


def _brute_force_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    batch, n, _ = x.shape
    adj = torch.zeros(batch, n, n)
    for b in range(batch):
        for i in range(n):
            sims = [(F.cosine_similarity(x[b, i], x[b, j], dim=0).item(), j)
                    for j in range(n) if j != i]
            for _, j in sorted(sims, reverse=True)[:k]:
                adj[b, i, j] = adj[b, j, i] = 1.0
    return adj


@pytest.mark.parametrize(("n", "k"), [(20, 4), (12, 9)])
def test_knn_graph_equals_brute_force(n: int, k: int) -> None:
    x = torch.randn(2, n, 6)
    adj = knn_graph(x, k)
    torch.testing.assert_close(adj, _brute_force_knn(x, k))
    assert torch.equal(adj, adj.transpose(1, 2))
    assert adj.diagonal(dim1=1, dim2=2).sum() == 0
    assert (adj.sum(-1) >= k).all()


@pytest.mark.parametrize("n", [1, 2, 5])
def test_knn_graph_clips_k_on_small_grids(n: int) -> None:
    adj = knn_graph(torch.randn(2, n, 4), k=9)
    assert adj.diagonal(dim1=1, dim2=2).sum() == 0
    expected_degree = n - 1  # k clipped to N - 1: every other node is a neighbour
    assert (adj.sum(-1) == expected_degree).all()


def test_graph_expert_keeps_shape_and_passes_gradient() -> None:
    expert = GraphExpert(dim=16, knn=3, cheb_k=3, layers=2)
    x = torch.randn(2, 9, 16, requires_grad=True)
    y = expert(x)
    y.sum().backward()
    assert y.shape == x.shape
    assert all(p.grad is not None for p in expert.parameters())
