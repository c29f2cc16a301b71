"""One drawing procedure per NFFA class: each returns a :class:`Scene` (height and material).

Lengths are drawn as fractions of the image side, so a class looks the same at 64 or 512 pixels.
Scale, orientation, density and shape vary at random within each class; the SEM look (edges,
noise, contrast) is added afterwards by :mod:`hnf.data.synth.render`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hnf.data.synth.fields import (
    blur,
    dome,
    fractal_noise,
    rotated,
    sample_bent_rods,
    sample_polyline,
    smooth_noise,
    splat,
    tubes,
    worley,
)
from hnf.data.synth.render import Scene

Array = np.ndarray
Rng = np.random.Generator


def _zeros(size: int) -> Array:
    return np.zeros((size, size), np.float32)


def _wobble(rng: Rng, amount: float) -> Array:
    """Random Fourier amplitudes and phases (harmonics 2 and 3) for irregular outlines."""
    amps = rng.uniform(0.0, amount, 2) / np.arange(1, 3)
    return np.stack([amps, rng.uniform(0, 2 * np.pi, 2)], axis=1)


def _walk(size: int, rng: Rng, length: float, curl: float) -> Array:
    """A smooth random curve of ``length`` pixels centred at a random point; its curvature
    itself drifts (a second-order random walk), ``curl`` setting how much it bends."""
    n = max(4, int(length / 4.0))  # one node every 4 px
    curvature = np.cumsum(rng.normal(0.0, curl, n)) + rng.normal(0.0, curl * 3)
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(curvature) * 4.0
    steps = 4.0 * np.stack([np.sin(heading), np.cos(heading)], axis=1)
    pts = np.concatenate([[[0.0, 0.0]], np.cumsum(steps, axis=0)])
    return pts - pts.mean(axis=0) + rng.uniform(0, size, 2)


def biological(size: int, rng: Rng) -> Scene:
    """Cells: soft, rounded-to-elongated bodies with wobbly outlines, a wrinkled membrane texture,
    sometimes a nucleus bulge, sometimes thin filaments (hyphae, extracellular fibres) between."""
    h = _zeros(size)
    major = size * rng.uniform(0.11, 0.24)
    aspect = rng.uniform(1.4, 3.0)
    count = int(np.clip(rng.uniform(0.3, 0.8) * size * size / (np.pi * major * major / aspect), 3, 40))
    for _ in range(count):
        m = major * rng.uniform(0.7, 1.3)
        cy, cx = rng.uniform(0, size, 2)
        dome(size, h, cy, cx, m / aspect, m, rng.uniform(0, np.pi), m * 0.3, _wobble(rng, 0.35))
        if rng.random() < 0.4:
            dome(size, h, cy + rng.normal(0, m * 0.15), cx + rng.normal(0, m * 0.15),
                 m * 0.3 / aspect, m * 0.3, 0.0, m * 0.4)
    h += (h > 0) * np.float32(major * rng.uniform(0.02, 0.08)) * fractal_noise(size, major * 0.25, rng, 2)
    if rng.random() < 0.5:
        pts = np.concatenate([sample_polyline(_walk(size, rng, size * rng.uniform(0.5, 1.5), 0.004 * 256 / size))
                              for _ in range(int(rng.integers(2, 9)))])
        h = np.maximum(h, tubes(size, pts, max(0.6, size * rng.uniform(0.002, 0.006))))
    return Scene(h, np.float32(rng.uniform(-0.3, 0.3)) * (h > 0.5))


def fibres(size: int, rng: Rng) -> Scene:
    """Fibres: a few long, thick, gently curved strands (round cross-section) crossing the frame."""
    count = int(rng.integers(2, 8))
    radius = size * rng.uniform(0.04, 0.08)
    pts = []
    for _ in range(count):
        curve = _walk(size, rng, size * rng.uniform(1.0, 2.0), rng.uniform(0.0003, 0.0025) * 256 / size)
        pts.append(sample_polyline(curve, 0.7))
    h = tubes(size, np.concatenate(pts), radius, 0.7)
    if rng.random() < 0.5:  # surface striations along the fibres
        h += (h > 0) * np.float32(radius * 0.05) * smooth_noise(size, radius * 0.3, rng)
    return Scene(h, _zeros(size))


def films_coated_surface(size: int, rng: Rng) -> Scene:
    """Films and coatings: polycrystalline grains (Voronoi cells with shallow grain-boundary
    grooves and per-grain contrast, from fine to coarse) over a smooth, finely textured film,
    sometimes split by a network of dark cracks."""
    h = np.float32(rng.uniform(0.2, 1.0)) * fractal_noise(size, size * rng.uniform(0.03, 0.15), rng)
    material = _zeros(size)
    # grains, from fine (a smooth, textured film) to coarse
    cell = size * rng.uniform(0.03, 0.14)
    f1, f2, ids = worley(size, cell, rng)
    table = rng.uniform(-1, 1, int(ids.max()) + 1).astype(np.float32)
    material += np.float32(rng.uniform(0.5, 1.0)) * table[ids]
    h -= np.float32(cell * rng.uniform(0.03, 0.1)) * np.exp(-(f2 - f1) / np.float32(1.0 + cell * 0.03))
    if rng.random() < 0.35:  # cracks
        f1, f2, ids = worley(size, size * rng.uniform(0.15, 0.4), rng)
        keep = rng.random(int(ids.max()) + 1) < rng.uniform(0.5, 1.0)
        width = max(1.0, size * rng.uniform(0.008, 0.02))
        crack = ((f2 - f1) < width) & keep[ids]
        h -= crack * np.float32(size * 0.04)
        material -= crack * np.float32(1.0)
    return Scene(h, material)


def mems_devices_and_electrodes(size: int, rng: Rng) -> Scene:
    """MEMS and electrodes: large rectilinear structures (pads, traces, interdigitated combs,
    perforated plates), axis-aligned up to a small tilt or a quarter turn."""
    angle = rng.integers(0, 4) * np.pi / 2 + rng.normal(0, 0.05) * (rng.random() < 0.5)
    u, v = rotated(size, angle, size / 2 + rng.normal(0, size * 0.1), size / 2 + rng.normal(0, size * 0.1))
    u, v = u / size, v / size
    up = _zeros(size)
    tall = np.float32(size * rng.uniform(0.03, 0.08))
    # interdigitated comb: two banks of fingers from opposite rails
    period = rng.uniform(0.05, 0.14)
    finger = period * rng.uniform(0.2, 0.35)
    gap = rng.uniform(0.25, 0.5)
    rail = rng.uniform(0.06, 0.15)
    phase = np.mod(u, period)
    left = (phase < finger) & (v > -gap) & (v < gap * 0.6)
    right = (np.abs(phase - period / 2) < finger / 2) & (v < gap) & (v > -gap * 0.6)
    comb = left | right | (np.abs(v + gap + rail / 2) < rail / 2) | (np.abs(v - gap - rail / 2) < rail / 2)
    if rng.random() < 0.85:
        extent = rng.uniform(0.2, 0.6)
        up = np.maximum(up, comb * (np.abs(u) < extent))
    # pads and traces
    for _ in range(int(rng.integers(1, 5))):
        cu, cv = rng.uniform(-0.6, 0.6, 2)
        hu, hv = rng.uniform(0.05, 0.25), rng.uniform(0.05, 0.25)
        if rng.random() < 0.5:  # trace
            hu, hv = (rng.uniform(0.3, 0.8), rng.uniform(0.01, 0.04))[:: 1 if rng.random() < 0.5 else -1]
        pad = (np.abs(u - cu) < hu) & (np.abs(v - cv) < hv)
        if rng.random() < 0.3:  # release holes in a plate
            hp = rng.uniform(0.03, 0.06)
            holes = (np.abs(np.mod(u - cu, hp) - hp / 2) < hp * 0.22) & (np.abs(np.mod(v - cv, hp) - hp / 2) < hp * 0.22)
            pad &= ~holes
        up = np.maximum(up, pad * np.float32(rng.uniform(0.5, 1.0)))
    h = blur(up.astype(np.float32), 0.6) * tall
    return Scene(h, np.float32(rng.uniform(-0.5, 1.0)) * (up > 0))


def nanowires(size: int, rng: Rng) -> Scene:
    """Nanowires: many thin, straight or slightly bent rods, randomly oriented or partly aligned,
    lying across each other."""
    count = int(rng.integers(40, 150))
    radius = max(0.5, size * rng.uniform(0.005, 0.012))
    length = size * rng.uniform(0.15, 0.6)
    main_dir = rng.uniform(0, np.pi)
    spread = rng.choice([np.pi, rng.uniform(0.1, 0.5)])
    theta = main_dir + rng.uniform(-spread, spread, count)
    lengths = length * rng.uniform(0.5, 1.5, count)
    spans = np.stack([np.sin(theta), np.cos(theta)], axis=1) * lengths[:, None]
    bows = np.stack([spans[:, 1], -spans[:, 0]], axis=1) * rng.normal(0, 0.04, count)[:, None]
    starts = rng.uniform(-0.2 * size, 1.2 * size, (count, 2)) - 0.5 * spans
    pts = sample_bent_rods(starts, spans, bows, 0.5)
    h = tubes(size, pts, radius, 0.5)
    return Scene(h, np.float32(rng.uniform(0.3, 1.0)) * (h > 0))


def particles(size: int, rng: Rng) -> Scene:
    """Particles: rounded, compact blobs (spheres or slightly elliptic) with steep sides, so the
    edge effect gives them bright rims; log-normal sizes, random coverage."""
    h = _zeros(size)
    radius = size * rng.uniform(0.03, 0.075)
    count = int(np.clip(rng.uniform(0.08, 0.5) * size * size / (np.pi * radius * radius), 3, 90))
    spread = rng.uniform(0.05, 0.35)
    for _ in range(count):
        r = radius * np.exp(rng.normal(0, spread))
        cy, cx = rng.uniform(0, size, 2)
        e = rng.uniform(0.88, 1.0)
        dome(size, h, cy, cx, r * e, r, rng.uniform(0, np.pi), r)
    return Scene(h, np.float32(rng.uniform(0.0, 0.8)) * (h > 0))


def patterned_surface(size: int, rng: Rng) -> Scene:
    """Patterned surfaces: a periodic square or hexagonal array of pillars or holes, or a line
    grating, at a random pitch and angle, with defects (missing, shifted, resized elements)."""
    pitch = size * rng.uniform(0.07, 0.16)
    u, v = rotated(size, rng.uniform(0, np.pi), rng.uniform(0, size), rng.uniform(0, size))
    u, v = u / np.float32(pitch), v / np.float32(pitch)
    table = 64
    kind = rng.random()
    if kind < 0.1:  # line grating
        iu = np.floor(u).astype(np.intp) % table
        width = rng.uniform(0.2, 0.4)
        broken = rng.random((table, table)) < rng.uniform(0.0, 0.15)
        seg = np.floor(v / rng.uniform(1, 4)).astype(np.intp) % table
        up = (np.abs(u - np.floor(u) - 0.5) < width) & ~broken[iu, seg]
    else:
        hexagonal = rng.random() < 0.5
        if hexagonal:
            v = v / np.float32(np.sqrt(3) / 2)
            row = np.floor(v + 0.5)
            u = u + 0.5 * (np.mod(row, 2) == 1)
        iu, iv = np.floor(u + 0.5), np.floor(v + 0.5)
        ti, tv = iu.astype(np.intp) % table, iv.astype(np.intp) % table
        jit = np.float32(rng.uniform(0.0, 0.04))
        du = u - iu + jit * rng.standard_normal((table, table), dtype=np.float32)[ti, tv]
        dv = v - iv + jit * rng.standard_normal((table, table), dtype=np.float32)[ti, tv]
        if hexagonal:
            dv = dv * np.float32(np.sqrt(3) / 2)
        radius = rng.uniform(0.18, 0.38) * (1 + rng.uniform(0, 0.2) * rng.standard_normal((table, table)))[ti, tv]
        missing = rng.random((table, table)) < rng.uniform(0.01, 0.06)
        rho = np.hypot(du, dv) if rng.random() < 0.7 else np.maximum(np.abs(du), np.abs(dv))
        up = (rho < radius) & ~missing[ti, tv]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    h = blur(up.astype(np.float32), 0.5) * np.float32(sign * pitch * rng.uniform(0.15, 0.4))
    return Scene(h, np.float32(rng.uniform(-0.4, 0.4)) * up)


def porous_sponge(size: int, rng: Rng) -> Scene:
    """Porous sponges: dark, deep, steep-walled pores of varied size in a continuous matrix,
    either round pores (cellular foam) or a bicontinuous network (thresholded smooth noise)."""
    if rng.random() < 0.5:
        cell = size * rng.uniform(0.05, 0.15)
        f1, _, ids = worley(size, cell, rng)
        radii = rng.uniform(0.2, 0.5, int(ids.max()) + 1).astype(np.float32) * np.float32(cell)
        inside = 1.0 - f1 / radii[ids] + np.float32(0.35) * smooth_noise(size, cell * 0.4, rng)
    else:
        cell = size * rng.uniform(0.03, 0.09)
        inside = fractal_noise(size, cell, rng, 2) - np.float32(rng.uniform(-0.3, 0.6))
    pore = np.clip(inside * np.float32(4.0), 0.0, 1.0)  # steep wall, flat dark bottom
    h = -pore * np.float32(size * rng.uniform(0.02, 0.06))
    h += np.float32(size * 0.004) * smooth_noise(size, size * 0.05, rng)
    return Scene(h, -np.float32(rng.uniform(0.8, 1.6)) * pore)


def powder(size: int, rng: Rng) -> Scene:
    """Powder: clustered, irregular aggregates of small grains (merged metaballs with rough,
    lumpy outlines) scattered on a darker substrate."""
    clusters = int(rng.integers(3, 12))
    grain = size * rng.uniform(0.015, 0.035)
    ys, xs = [], []
    for _ in range(clusters):
        spread = size * rng.uniform(0.025, 0.07)
        n = int(rng.integers(6, 25))
        c = rng.uniform(0, size, 2)
        ys.append(c[0] + rng.normal(0, spread, n))
        xs.append(c[1] + rng.normal(0, spread, n))
    ys_all, xs_all = np.concatenate(ys), np.concatenate(xs)
    weights = rng.uniform(0.5, 1.5, ys_all.size)
    field = blur(splat(size, ys_all, xs_all, weights), grain)
    field *= np.float32(2 * np.pi * grain * grain)
    field *= np.float32(1.0) + np.float32(0.35) * smooth_noise(size, grain * 0.8, rng)
    h = np.sqrt(np.clip(field - np.float32(0.5), 0.0, None)) * np.float32(grain * 2)
    return Scene(h, np.float32(rng.uniform(0.5, 1.0)) * (h > 0))


def tips(size: int, rng: Rng) -> Scene:
    """Tips: a single tapering cone seen from the side (probe or needle, round cross-section,
    sometimes on a cantilever beam) or a square pyramid seen from above (four facets)."""
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    if rng.random() < 0.6:  # side view cone, pointing into the frame
        half = rng.uniform(0.12, 0.45)
        length = size * rng.uniform(0.8, 1.5)
        towards_centre = np.arctan2(size / 2 - cy, size / 2 - cx) if abs(cy - size / 2) + abs(cx - size / 2) > 1 else 0.0
        u, v = rotated(size, towards_centre + rng.normal(0, 0.6), cy, cx)
        apex = np.float32(size * rng.uniform(0.005, 0.02))
        radius = np.where(u > 0, apex + u * np.float32(np.tan(half)), np.float32(0.0))
        radius = np.where(u > length, np.float32(0.0), radius)
        h = np.sqrt(np.clip(radius * radius - v * v, 0.0, None))
        if rng.random() < 0.4:  # cantilever
            beam = (u > length * 0.5) & (np.abs(v) < np.float32(length * rng.uniform(0.2, 0.5)))
            h = np.maximum(h, beam * np.float32(size * 0.05))
    else:  # top-down pyramid
        u, v = rotated(size, rng.uniform(0, np.pi / 2), cy, cx)
        base = size * rng.uniform(0.2, 0.45)
        h = np.clip(np.float32(base) - np.maximum(np.abs(u), np.abs(v)), 0.0, None)
        h *= np.float32(rng.uniform(0.5, 1.5))
    return Scene(h.astype(np.float32), np.float32(rng.uniform(0.0, 0.6)) * (h > 0))


DrawFn = Callable[[int, Rng], Scene]

CLASS_DRAWERS: dict[str, DrawFn] = {
    "Biological": biological,
    "Fibres": fibres,
    "Films_Coated_Surface": films_coated_surface,
    "MEMS_devices_and_electrodes": mems_devices_and_electrodes,
    "Nanowires": nanowires,
    "Particles": particles,
    "Patterned_surface": patterned_surface,
    "Porous_Sponge": porous_sponge,
    "Powder": powder,
    "Tips": tips,
}
