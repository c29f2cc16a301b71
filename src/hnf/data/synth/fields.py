"""Vectorised building blocks for the synthetic micrographs: grids, noise, blurs and splats.

Everything here works on square float32 images of side ``size`` and never loops over pixels;
loops run over objects (a few dozen at most) or over the 9 neighbours of a Worley cell.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

Array = np.ndarray


@lru_cache(maxsize=16)
def grid(size: int) -> tuple[Array, Array]:
    """Read-only row and column coordinate arrays (float32, ``size`` x ``size``)."""
    axis = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def rotated(size: int, angle: float, cy: float, cx: float) -> tuple[Array, Array]:
    """Coordinates (u along ``angle``, v across it) of every pixel relative to (cy, cx)."""
    yy, xx = grid(size)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dy, dx = yy - np.float32(cy), xx - np.float32(cx)
    return dx * c + dy * s, -dx * s + dy * c


def resize(img: Array, size: int) -> Array:
    """Bicubic resize of a float32 image to ``size`` x ``size`` (PIL, deterministic)."""
    out = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return np.array(out, dtype=np.float32)


#: Keys cubic (a = -0.5) weights of the four input pixels around an output pixel of a 2x
#: upsampling that lies a quarter pixel before the centre of an input pixel.
_CUBIC_QUARTER = np.array([-0.0234375, 0.2265625, 0.8671875, -0.0703125], np.float32)


def _upsample2_rows(img: Array) -> Array:
    w0, w1, w2, w3 = _CUBIC_QUARTER
    pad = np.concatenate([img[:1], img[:1], img, img[-1:], img[-1:]])  # edge pixels repeated
    out = np.empty((2 * img.shape[0], img.shape[1]), np.float32)
    even, odd = out[0::2], out[1::2]
    np.multiply(pad[:-4], w0, out=even)
    even += w1 * pad[1:-3]
    even += w2 * pad[2:-2]
    even += w3 * pad[3:-1]
    np.multiply(pad[1:-3], w3, out=odd)
    odd += w2 * pad[2:-2]
    odd += w1 * pad[3:-1]
    odd += w0 * pad[4:]
    return out


def upsample2(img: Array) -> Array:
    """Bicubic 2x upsampling of a float32 image (Keys kernel, edges repeated): pure numpy, so
    the result does not depend on a BLAS library or thread count; about a quarter of the cost of
    PIL's float bicubic resize."""
    rows = _upsample2_rows(np.asarray(img, np.float32))
    return np.ascontiguousarray(_upsample2_rows(np.ascontiguousarray(rows.T)).T)


def smooth_noise(size: int, cell: float, rng: np.random.Generator) -> Array:
    """Smooth random field (about zero mean, unit variance) with features about ``cell`` pixels wide."""
    n = max(2, int(np.ceil(size / max(cell, 1.0))) + 1)
    return resize(rng.standard_normal((n, n), dtype=np.float32) * np.float32(1.25), size)


def fractal_noise(size: int, cell: float, rng: np.random.Generator, octaves: int = 3) -> Array:
    """Sum of smooth noises at ``cell``, ``cell/2``, ... with halving amplitudes (about unit variance)."""
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for _ in range(octaves):
        out += np.float32(amp) * smooth_noise(size, cell, rng)
        cell, amp = max(cell / 2.0, 1.5), amp * 0.5
    return out * np.float32(0.87)


def blur(img: Array, sigma: float) -> Array:
    """Gaussian blur; large sigmas use three box passes (same variance, constant cost)."""
    if sigma <= 0.05:
        return img
    if sigma < 2.5:
        return ndimage.gaussian_filter(img, sigma, mode="reflect", truncate=3.0)
    width = int(round(np.sqrt(4.0 * sigma * sigma + 1.0))) | 1
    out = img
    for _ in range(3):
        out = ndimage.uniform_filter(out, width, mode="reflect")
    return out


def splat(size: int, ys: Array, xs: Array, weights: Array | float = 1.0) -> Array:
    """Bilinear splat of points (with weights) into a ``size`` x ``size`` image."""
    ys = np.asarray(ys, np.float32)
    xs = np.asarray(xs, np.float32)
    w = np.broadcast_to(np.asarray(weights, np.float32), ys.shape)
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = ys - y0, xs - x0
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    out = np.zeros(size * size, np.float64)
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                       (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yi, xi = y0 + dy, x0 + dx
        ok = (yi >= 0) & (yi < size) & (xi >= 0) & (xi < size)
        out += np.bincount(yi[ok] * size + xi[ok], (w * wt)[ok], minlength=size * size)
    return out.reshape(size, size).astype(np.float32)


def sample_polyline(points: Array, step: float = 0.5) -> Array:
    """Points every ``step`` pixels along a polyline given as an (n, 2) array of (y, x)."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, cum[-1] + 1e-9, step)
    return np.stack([np.interp(t, cum, points[:, 0]), np.interp(t, cum, points[:, 1])], axis=1)


def sample_bent_rods(starts: Array, spans: Array, bows: Array, step: float = 0.5) -> Array:
    """Points every ~``step`` pixels along many slightly bent rods at once.

    Rod i runs from ``starts[i]`` to ``starts[i] + spans[i]`` and bulges sideways by ``bows[i]``
    at its middle (a parabola); all arrays are (n, 2) in (y, x).
    """
    counts = np.ceil(np.hypot(spans[:, 0], spans[:, 1]) / step).astype(np.intp) + 1
    rod = np.repeat(np.arange(counts.size), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    t = ((np.arange(rod.size) - first) / np.repeat(counts - 1, counts))[:, None]
    return starts[rod] + t * spans[rod] + 4.0 * t * (1.0 - t) * bows[rod]


def tubes(size: int, points: Array, radius: float, step: float = 0.5) -> Array:
    """Height map of round tubes of ``radius`` pixels along densely sampled centre points.

    The centre lines are splatted and blurred into a Gaussian ridge g (peak 1); a cylinder of
    radius R = 2 sigma has height sqrt(R^2 - d^2) = sigma * sqrt(4 + 2 ln g), which is what is
    returned (0 outside). Crossing tubes add up, so junctions bulge a little.
    """
    sigma = max(radius / 2.0, 0.35)
    ridge = blur(splat(size, points[:, 0], points[:, 1], step), sigma)
    ridge *= np.float32(np.sqrt(2.0 * np.pi) * sigma)
    with np.errstate(divide="ignore"):
        inner = 4.0 + 2.0 * np.log(np.maximum(ridge, 1e-12))
    return np.float32(sigma) * np.sqrt(np.clip(inner, 0.0, 6.0)).astype(np.float32)


def worley(size: int, cell: float, rng: np.random.Generator) -> tuple[Array, Array, Array]:
    """Worley (cellular) noise: distances to the nearest and second nearest seed, and the id of
    the nearest seed (one jittered seed per ``cell`` x ``cell`` square, so about a Voronoi tiling).

    Above 128 pixels it is computed on a half-size grid and upsampled (distances bilinearly,
    ids by nearest neighbour), which keeps the cost flat; cells are at least a few pixels wide.
    """
    if size > 128:
        half = (size + 1) // 2
        f1, f2, ids = worley(half, cell * half / size, rng)
        scale = np.float32(size / half)
        up = Image.Resampling.BILINEAR
        f1 = np.array(Image.fromarray(f1).resize((size, size), up), np.float32) * scale
        f2 = np.array(Image.fromarray(f2).resize((size, size), up), np.float32) * scale
        pick = np.minimum((np.arange(size) * half) // size, half - 1)
        return f1, f2, ids[pick[:, None], pick[None, :]]
    n = int(np.ceil(size / cell)) + 2
    idx = np.arange(n, dtype=np.float32) - 1.0
    sy = ((rng.random((n, n), dtype=np.float32) + idx[:, None]) * np.float32(cell)).ravel()
    sx = ((rng.random((n, n), dtype=np.float32) + idx[None, :]) * np.float32(cell)).ravel()
    yy, xx = grid(size)
    base = ((yy / np.float32(cell)).astype(np.intp) + 1) * n + (xx / np.float32(cell)).astype(np.intp) + 1
    f1 = np.full((size, size), np.inf, np.float32)
    f2 = np.full((size, size), np.inf, np.float32)
    ids = base.copy()
    for off in (-n - 1, -n, -n + 1, -1, 0, 1, n - 1, n, n + 1):
        cand = base + off
        d = np.square(np.take(sy, cand) - yy)
        d += np.square(np.take(sx, cand) - xx)
        np.minimum(f2, np.maximum(f1, d), out=f2)
        np.copyto(ids, cand, where=d < f1)
        np.minimum(f1, d, out=f1)
    return np.sqrt(f1), np.sqrt(f2), ids


def dome(size: int, height: Array, cy: float, cx: float, ry: float, rx: float,
         angle: float, peak: float, wobble: Array | None = None) -> None:
    """Raise an elliptical dome (max-combined into ``height`` in place) inside its bounding box.

    ``wobble`` (rows of amplitude and phase for harmonics 2 and 3) makes the outline irregular:
    r(theta) scales by 1 + sum_k a_k cos(k theta + phi_k).
    """
    r = max(ry, rx) * (1.6 if wobble is not None else 1.0) + 1
    y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 2)
    x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 2)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = grid(size)
    dy, dx = yy[y0:y1, x0:x1] - np.float32(cy), xx[y0:y1, x0:x1] - np.float32(cx)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = (dx * c + dy * s) / np.float32(rx), (-dx * s + dy * c) / np.float32(ry)
    rho2 = u * u + v * v
    if wobble is not None:  # harmonics 2 and 3 of the polar angle, from cos/sin polynomials
        inv = 1.0 / np.sqrt(rho2 + np.float32(1e-6))
        c, s = u * inv, v * inv
        (a2, p2), (a3, p3) = wobble[:2]
        cos2, sin2 = c * c - s * s, 2 * c * s
        cos3, sin3 = c * (4 * c * c - 3), s * (3 - 4 * s * s)
        scale = (1.0 + np.float32(a2 * np.cos(p2)) * cos2 - np.float32(a2 * np.sin(p2)) * sin2
                 + np.float32(a3 * np.cos(p3)) * cos3 - np.float32(a3 * np.sin(p3)) * sin3)
        rho2 = rho2 / (scale * scale)
    cap = np.float32(peak) * np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    np.maximum(height[y0:y1, x0:x1], cap, out=height[y0:y1, x0:x1])
