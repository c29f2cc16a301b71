"""hnf: classify electron micrographs by the nanomaterial they show.

The public API grows with the package: data reading and synthetic micrographs live in
:mod:`hnf.data`; models in :mod:`hnf.models`.
"""

__version__ = "0.1.0"
