"""One synthetic micrograph: pick the class procedure, add the substrate, render as an SEM."""

from __future__ import annotations

import numpy as np

from hnf.data.synth.classes import CLASS_DRAWERS
from hnf.data.synth.render import sem_render, substrate

SYNTH_CLASSES: tuple[str, ...] = tuple(CLASS_DRAWERS)

#: Above this side the scene (shapes) is drawn, and its smooth SEM signal computed, at half size
#: and upsampled; the noise and scan lines are added at full size. It keeps large images fast.
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
    return sem_render(scene, rng, size)
