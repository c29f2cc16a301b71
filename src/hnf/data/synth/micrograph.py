"""One synthetic micrograph: pick the class procedure, add the substrate, render as an SEM."""

from __future__ import annotations

import numpy as np

from hnf.data.synth.classes import CLASS_DRAWERS
from hnf.data.synth.fields import resize
from hnf.data.synth.render import Scene, sem_render, substrate

SYNTH_CLASSES: tuple[str, ...] = tuple(CLASS_DRAWERS)

#: Above this side the scene (shapes) is drawn at half size and upsampled before the SEM
#: rendering, which stays at full size (noise, scan lines); it keeps large images fast.
SCENE_FULL_RES = 160


def render_micrograph(class_name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one SEM micrograph of ``class_name``: float32 array ``size`` x ``size`` in [0, 1].

    All randomness comes from ``rng``, so the same generator state gives the same image.
    """
    try:
        draw = CLASS_DRAWERS[class_name]
    except KeyError:
        raise ValueError(
            f"unknown synthetic class {class_name!r}; expected one of {', '.join(CLASS_DRAWERS)}"
        ) from None
    scene_size = size if size <= SCENE_FULL_RES else (size + 1) // 2
    scene = draw(scene_size, rng)
    scene.height = scene.height + substrate(scene_size, rng)
    if scene_size != size:
        scene = Scene(resize(scene.height, size) * np.float32(size / scene_size),
                      resize(scene.material, size))
    return sem_render(scene, rng)
