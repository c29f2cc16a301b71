"""SEM rendering: turn a scene (height and material maps) into a grey secondary-electron image.

A scanning electron microscope's secondary-electron signal is brightest where the beam meets the
surface at a grazing angle (edges and slopes: the edge effect), a little brighter on faces tilted
towards the detector, darker in deep holes, and depends on the material. On top of that come the
instrument's flaws: beam blur, shot noise (Poisson), line-to-line jitter of the raster scan, and
slow charging gradients. Every strength is drawn at random per image, so the global brightness,
contrast and noise of an image say little about its class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hnf.data.synth.fields import blur, smooth_noise, upsample2

Array = np.ndarray


@dataclass
class Scene:
    """What a class procedure draws: surface ``height`` in pixels and a ``material`` map in [-1, 1]
    (positive: brighter-emitting material such as metal or particles, negative: darker)."""

    height: Array
    material: Array


def substrate(size: int, rng: np.random.Generator) -> Array:
    """A gently rough background surface (height in pixels) shared by every class."""
    cell = size * rng.uniform(0.03, 0.3)
    return np.float32(cell * rng.uniform(0.0, 0.06)) * smooth_noise(size, cell, rng)


def sem_signal(scene: Scene, rng: np.random.Generator) -> Array:
    """Secondary-electron signal of a scene, normalised to zero mean and unit variance."""
    h = scene.height
    gy, gx = np.gradient(h)
    slope = np.hypot(gx, gy)
    edge = slope / (slope + np.float32(rng.uniform(0.3, 1.2)))
    phi = rng.uniform(0.0, 2.0 * np.pi)
    facing = gx * np.float32(np.cos(phi)) + gy * np.float32(np.sin(phi))
    facing /= 1.0 + np.abs(facing)
    lo = h.min()
    depth_gain = rng.uniform(0.1, 0.8) / (float(h.max() - lo) + 1e-6)
    signal = np.float32(rng.uniform(0.6, 1.6)) * edge
    signal += np.float32(rng.uniform(0.0, 0.5)) * facing
    signal += np.float32(depth_gain) * (h - lo)
    signal += np.float32(rng.uniform(0.1, 0.7)) * scene.material
    signal -= signal.mean()
    signal *= np.float32(1.0) / (signal.std() + np.float32(1e-6))
    return signal


def charging(size: int, rng: np.random.Generator) -> Array:
    """Slow brightness drift from specimen charging: a tilted plane plus a bowl or dome.

    Both are sums of a row term and a column term, so the field is one broadcast addition.
    """
    axis = np.arange(size, dtype=np.float32) - np.float32(size / 2)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    tilt = rng.uniform(0.0, 0.25) / size
    bowl = np.float32(rng.uniform(-0.12, 0.12) / (size * size * 0.25))
    cy, cx = rng.uniform(-0.5, 0.5, 2) * size
    rows = np.float32(tilt * np.sin(angle)) * axis + bowl * np.square(axis - np.float32(cy))
    cols = np.float32(tilt * np.cos(angle)) * axis + bowl * np.square(axis - np.float32(cx))
    return rows[:, None] + cols[None, :]


def scan_noise(size: int, rng: np.random.Generator) -> Array:
    """Raster-scan artefacts: a random offset per line and a few brighter streaks (a column)."""
    rows = np.float32(rng.uniform(0.0, 0.02)) * rng.standard_normal(size).astype(np.float32)
    streaks = rng.random(size) < rng.uniform(0.0, 0.02)
    rows += streaks.astype(np.float32) * np.float32(rng.uniform(0.0, 0.15))
    return rows[:, None]


def sem_render(scene: Scene, rng: np.random.Generator, size: int | None = None) -> Array:
    """Render a scene as an SEM image: float32 ``size`` x ``size`` in [0, 1].

    Steps: secondary-electron signal (edge brightening, detector shading, depth, material), a
    random brightness and contrast, beam blur, charging gradient, shot noise whose amplitude grows
    with the signal (Poisson-like, random dose), scan-line noise, a random tone curve, clipping.

    ``size`` (default: the scene's side) may be twice the scene's side, or one less: the smooth
    part (signal and beam blur) is then computed at the scene's resolution and upsampled
    (bicubic), and the noise, drift and tone curve are added at full size.
    """
    scene_size = scene.height.shape[0]
    size = scene_size if size is None else size
    if size != scene_size and size not in (2 * scene_size - 1, 2 * scene_size):
        raise ValueError(f"cannot render a {scene_size}-pixel scene at {size} pixels")
    img = sem_signal(scene, rng)
    img *= np.float32(rng.uniform(0.1, 0.22))
    img += np.float32(rng.uniform(0.3, 0.65))
    sigma = rng.uniform(0.3, 1.1)  # beam blur in output pixels
    if size != scene_size:
        img = upsample2(blur(img, sigma * scene_size / size))
        if img.shape[0] != size:
            img = np.ascontiguousarray(img[:size, :size])
    else:
        img = blur(img, sigma)
    img += charging(size, rng)  # the drift is smooth: add it after the blur
    # shot noise: uniform noise of unit variance scaled by sqrt(signal) (Poisson-like)
    noise = rng.random((size, size), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.sqrt(np.maximum(img, np.float32(0.02)))
    img += np.float32(rng.uniform(0.01, 0.08) * np.sqrt(12.0)) * noise
    img += scan_noise(size, rng)
    np.clip(img, 0.0, 1.0, out=img)
    bend = np.float32(rng.uniform(-0.5, 0.5))  # tone curve x + b x (1 - x), monotone for |b| < 1
    img += bend * img * (np.float32(1.0) - img)
    return img
