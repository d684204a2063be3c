"""deepexposure: learning to expose photos (DeepExposure, NeurIPS 2018), with exact exposure fusion.

``from deepexposure import Enhancer`` is the inference API (ONNX Runtime, no torch; torch only for ``.pt``
policies); it is imported lazily so that ``import deepexposure`` stays cheap for the image modules (io, fusion,
render, ...).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Enhancer", "Recipe", "__version__"]


def __getattr__(name: str):
    if name == "Enhancer":
        from deepexposure.inference.enhance import Enhancer

        return Enhancer
    if name == "Recipe":
        from deepexposure.image.recipe import Recipe

        return Recipe
    raise AttributeError(f"module 'deepexposure' has no attribute {name!r}")
