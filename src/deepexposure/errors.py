"""User-facing errors. Each carries a one-line message; the CLI prints it and exits with code 2."""

from __future__ import annotations

__all__ = ["DeepExposureError", "PhotoError", "DataError", "ModelError"]


class DeepExposureError(Exception):
    """Base class of every error meant for the user (bad input, bad data, bad model file)."""


class PhotoError(DeepExposureError):
    """A photo cannot be read or written (missing, not an image, truncated, too large, would overwrite)."""


class DataError(DeepExposureError):
    """A data set is unusable (no readable photos, bad layout, missing fold files)."""


class ModelError(DeepExposureError):
    """A model/policy/checkpoint file is missing, corrupt or of an unknown format."""
