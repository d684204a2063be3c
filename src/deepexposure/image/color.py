"""Colour conversions and the exposure operator.

All functions take and return float arrays; ``srgb`` means gamma-encoded sRGB in [0, 1],
``linear`` means linear-light sRGB primaries in [0, 1] (values above 1 allowed before clipping).
Exposure values are in EV stops: +1 EV doubles the linear light, -1 EV halves it.
Pure numpy, no torch: the learning code has its own differentiable twin in ``deepexposure.learning.env``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["srgb_to_linear", "linear_to_srgb", "apply_ev", "luminance"]

_A = 0.055
_THRESH_SRGB = 0.04045
_THRESH_LIN = 0.0031308


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding. ``srgb`` in [0, 1] (any shape) -> linear float32 in [0, 1]."""
    x = np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= _THRESH_SRGB, x / 12.92, ((x + _A) / (1 + _A)) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding. Linear values are clipped to [0, 1] first -> sRGB float32 in [0, 1]."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= _THRESH_LIN, x * 12.92, (1 + _A) * np.power(x, 1 / 2.4) - _A).astype(np.float32)


def apply_ev(srgb: np.ndarray, ev: float | np.ndarray) -> np.ndarray:
    """Expose an sRGB image by ``ev`` stops in linear light: ``srgb(clip(linear(x) * 2**ev, 0, 1))``.

    ``srgb``: float in [0, 1], shape (..., 3). ``ev``: scalar or an array broadcastable to ``srgb``
    (e.g. an (H, W, 1) map for a local edit). Highlights pushed past 1.0 clip per channel (as a camera
    sensor does); EV 0 returns the input unchanged (up to float32 rounding of the round trip).
    Returns float32 sRGB in [0, 1]; the input is never modified.
    """
    gain = np.exp2(np.asarray(ev, dtype=np.float32))
    return linear_to_srgb(srgb_to_linear(srgb) * gain)


def luminance(srgb: np.ndarray) -> np.ndarray:
    """Rec. 709 relative luminance of gamma-encoded sRGB ``(..., 3)`` in [0,1], computed in linear light -> (...) float32."""
    lin = srgb_to_linear(srgb)
    return (lin[..., 0] * 0.2126 + lin[..., 1] * 0.7152 + lin[..., 2] * 0.0722).astype(np.float32)
