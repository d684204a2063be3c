"""User-facing errors. Each carries a one-line message; the CLI prints it and exits with code 2."""

from __future__ import annotations

__all__ = ["DeepExposureError", "PhotoError", "PixelLimitError", "DataError", "ModelError", "ConfigError", "need_extra", "TRAIN_EXTRA"]


class DeepExposureError(Exception):
    """Base class of every error meant for the user (bad input, bad data, bad model file)."""


class PhotoError(DeepExposureError):
    """A photo cannot be read or written (missing, not an image, truncated, too large, would overwrite)."""


class PixelLimitError(PhotoError):
    """A photo has more pixels than allowed (found from its header, before decoding)."""


class DataError(DeepExposureError):
    """A data set is unusable (no readable photos, bad layout, missing fold files)."""


class ModelError(DeepExposureError):
    """A model/policy/checkpoint file is missing, corrupt or of an unknown format."""


class ConfigError(DeepExposureError):
    """A training config (``--config``, a run's config.json) is not JSON, has unknown keys or bad values."""


#: How to install what the training-side commands need (torch, tensorboard, onnx, scikit-learn).
TRAIN_EXTRA = "pip install 'deepexposure[train]'"


def need_extra(module: str, what: str, extra: str = "train") -> None:
    """Import ``module`` or raise :class:`DeepExposureError` "``what`` needs the training extra (``module`` is not
    installed): pip install 'deepexposure[train]'" (one line for the CLI, before any work is done); ``extra``
    names another extra (e.g. ``"cluster"``)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        how = TRAIN_EXTRA if extra == "train" else f"pip install 'deepexposure[{extra}]'"
        name = "training" if extra == "train" else extra
        raise DeepExposureError(f"{what} needs the {name} extra ({module} is not installed): {how}") from None
