"""deepexposure: learning to expose photos (DeepExposure, NeurIPS 2018), with exact exposure fusion.

``from deepexposure import Enhancer`` is the inference API (NumPy trees and ONNX Runtime, no torch; torch only for
``.pt`` policies), with :class:`Recipe`, :func:`read_photo`, :func:`write_photo` and :func:`render` beside it. They
are imported lazily, so that ``import deepexposure`` stays cheap. The package's folders: docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Enhancer", "Recipe", "read_photo", "write_photo", "render", "__version__"]

#: The public names and the module each one lives in.
_API = {"Enhancer": "deepexposure.inference.enhance", "Recipe": "deepexposure.image.recipe",
        "read_photo": "deepexposure.image.io", "write_photo": "deepexposure.image.io",
        "render": "deepexposure.image.render"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'deepexposure' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
