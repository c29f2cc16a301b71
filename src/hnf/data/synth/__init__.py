"""Synthetic SEM micrographs of the ten NFFA-EUROPE classes: the embedded default dataset.

``render_micrograph(name, size, rng)`` draws one image; ``write_synthetic_dataset`` writes a
one-folder-per-class PNG dataset with ``labels.csv``, byte-identical for the same arguments.
"""

from hnf.data.synth.micrograph import SYNTH_CLASSES, render_micrograph
from hnf.data.synth.writer import image_rngs, synth_image, write_synthetic_dataset

__all__ = [
    "SYNTH_CLASSES",
    "image_rngs",
    "render_micrograph",
    "synth_image",
    "write_synthetic_dataset",
]
