"""Exceptions that carry a message a user can act on."""

from __future__ import annotations

from pathlib import Path


class HnfError(Exception):
    """Base class of every error hnf raises on purpose (bad input, bad configuration)."""


class ImageReadError(HnfError):
    """A file could not be read as a micrograph.

    ``str(err)`` is ``"<path>: <reason>"``; ``err.path`` and ``err.reason`` keep the parts.
    ``http_status`` is the status the service answers an upload with that fails so.
    """

    http_status: int = 422  # Unprocessable Content: not a decodable image

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageReadError):
    """An image declares more pixels than the reader accepts (refused before decoding)."""

    http_status = 413  # Content Too Large


class DatasetError(HnfError):
    """A dataset (folder or manifest) is unusable as a whole."""
