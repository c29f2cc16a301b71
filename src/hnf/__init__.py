"""hnf: classify electron micrographs by the nanomaterial they show.

The public API grows with the package: data reading and synthetic micrographs live in
:mod:`hnf.data`; models in :mod:`hnf.models`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["create_model", "list_models"]


def __getattr__(name: str) -> Any:
    """Import the models (and torch) only when ``create_model`` / ``list_models`` is first used."""
    if name in __all__:
        from hnf import models

        return getattr(models, name)
    raise AttributeError(f"module 'hnf' has no attribute {name!r}")
