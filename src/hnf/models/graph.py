"""Vision graph over patch tokens: k-NN adjacency and a dense batched Chebyshev convolution.

Graphs here are small (N <= a few hundred nodes) and dense per image, so everything is a batched
dense matrix product; PyTorch Geometric's ``ChebConv`` is only the reference in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def knn_graph(x: Tensor, k: int) -> Tensor:
    """Symmetric 0/1 adjacency (B, N, N) of the k most cosine-similar other tokens.

    Node i gets edges to the ``min(k, N - 1)`` nodes j != i of highest cos(x_i, x_j); the graph is
    then symmetrised, A = max(A, A^T), so a node may have more than k neighbours. No self-loops.
    Computed in float32 without gradient (the graph is structure, not a learned function).

    Written without in-place writes (the diagonal is masked with ``torch.where``, the edges are
    placed with an out-of-place ``scatter``), so that tracing for ONNX records every step: the
    exporter drops in-place writes to views, which would leave the self-loops in the graph.
    """
    batch, n, _ = x.shape
    k = min(k, n - 1)
    if k <= 0:
        return x.new_zeros(batch, n, n, dtype=torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        unit = F.normalize(x.float(), dim=-1)
        sim = unit @ unit.transpose(1, 2)
    self_pairs = torch.eye(n, device=x.device) > 0.5  # onnxruntime has no boolean EyeLike
    sim = torch.where(self_pairs, torch.full_like(sim, float("-inf")), sim)
    adj = torch.zeros_like(sim).scatter(-1, sim.topk(k, dim=-1).indices, 1.0)
    return torch.maximum(adj, adj.transpose(1, 2))


def scaled_laplacian(adj: Tensor) -> Tensor:
    """L~ = 2 L / lambda_max - I with L = I - D^-1/2 A D^-1/2 and lambda_max = 2, i.e.
    L~ = -D^-1/2 A D^-1/2 (isolated nodes get a zero row and column)."""
    deg = adj.sum(-1)
    inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return -inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)


class ChebConv(nn.Module):
    """Dense batched Chebyshev graph convolution: ``y = sum_{k<K} T_k W_k + b``.

    T_0 = X, T_1 = L~ X, T_k = 2 L~ T_{k-1} - T_{k-2}, with L~ from :func:`scaled_laplacian`.
    The K weight matrices are one linear map of the concatenation [T_0, ..., T_{K-1}] (one GEMM);
    ``weight[:, k*in:(k+1)*in]`` equals PyG's ``lins[k].weight``.

    Args:
        in_dim: input node features F_in.
        out_dim: output node features F_out.
        k: Chebyshev terms K (PyG's ``K``); K = 1 is a plain linear map of the nodes.
        bias: learn the additive bias b.

    Shapes:
        - **input:** node features x (B, N, F_in); scaled Laplacian ``lap`` (B, N, N)
          (:func:`scaled_laplacian`)
        - **output:** node features (B, N, F_out)
    """

    def __init__(self, in_dim: int, out_dim: int, k: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.k = k
        self.lin = nn.Linear(k * in_dim, out_dim, bias=bias)

    def forward(self, x: Tensor, lap: Tensor) -> Tensor:
        terms = [x]
        if self.k > 1:
            lap = lap.to(x.dtype)
            terms.append(lap @ x)
            for _ in range(2, self.k):
                terms.append(2 * (lap @ terms[-1]) - terms[-2])
        return self.lin(torch.cat(terms, dim=-1))


class GraphExpert(nn.Module):
    """The graph expert of an HNF layer: a k-NN graph of the (normalised) tokens, then
    ``layers`` pre-norm residual Chebyshev convolutions, x <- x + GELU(ChebConv(LN(x), L~)).

    Args:
        dim: token width d.
        knn: neighbours k of :func:`knn_graph`.
        cheb_k: Chebyshev terms K of each :class:`ChebConv`.
        layers: residual convolutions.

    Shapes:
        - **input:** tokens x (B, N, d), the graph's nodes
        - **output:** tokens (B, N, d)
    """

    def __init__(self, dim: int, knn: int = 9, cheb_k: int = 3, layers: int = 2) -> None:
        super().__init__()
        self.knn = knn
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.convs = nn.ModuleList(ChebConv(dim, dim, cheb_k) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        lap = scaled_laplacian(knn_graph(x, self.knn))
        for norm, conv in zip(self.norms, self.convs):
            x = x + F.gelu(conv(norm(x), lap))
        return x
