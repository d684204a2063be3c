"""Renderers of a :class:`~deepexposure.recipe.Recipe` at full resolution (float32 sRGB [0, 1] in and out).

* ``fusion`` — the paper's test stage: the whole photo exposed by each EV, the copies and the original merged
  by Mertens exposure fusion (:func:`deepexposure.fusion.fuse_exposures`).
* ``local`` — the paper's "local" image: each EV applied inside its own segment, the way photographers use
  luminosity masks. The per-segment EVs form an EV map at preview size, upsampled edge-aware (guided filter on
  the photo) and applied in linear light: ``apply_ev(srgb, ev_map)``. Blending EVs (not pixels) means equal EVs
  in all segments give exactly the global exposure, and borders follow image edges without halos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepexposure.color import apply_ev
from deepexposure.recipe import Recipe
from deepexposure.segmentation import upsample_map

__all__ = ["RENDERERS", "render", "render_fusion", "render_local", "ev_map"]

RENDERERS = ("fusion", "local")

#: Photos with more pixels than this are fused by the fast (guided gain) path; see fusion.fuse_exposures.
FAST_FUSION_PIXELS = 4_000_000


def render_fusion(srgb: np.ndarray, evs: Sequence[float], *, fast: bool | None = None, **fusion_kw) -> np.ndarray:
    """Mertens fusion of the original and ``apply_ev(srgb, ev)`` for each EV (stops).

    ``fast``: None picks the exact fusion up to 4 MP and the guided-gain approximation above (> 38 dB from exact).
    """
    from deepexposure.fusion import fuse_exposures

    if fast is None:
        fast = srgb.shape[0] * srgb.shape[1] > FAST_FUSION_PIXELS
    return fuse_exposures(srgb, list(evs), fast=fast, **fusion_kw)


def ev_map(evs: Sequence[float], labels: np.ndarray, guide_srgb: np.ndarray, **upsample_kw) -> np.ndarray:
    """Full-resolution EV map (H, W) float32: EV of each preview segment, upsampled edge-aware."""
    evs = np.asarray(evs, dtype=np.float32)
    n = int(labels.max()) + 1
    if len(evs) != n:
        raise ValueError(f"{len(evs)} EVs for {n} segments")
    if np.all(evs == evs[0]):
        return np.full(guide_srgb.shape[:2], evs[0], np.float32)
    return upsample_map(evs[labels], guide_srgb, **upsample_kw)


def render_local(srgb: np.ndarray, evs: Sequence[float], labels: np.ndarray, **upsample_kw) -> np.ndarray:
    """Each EV applied inside its own feathered segment of ``labels`` (preview-size int labels)."""
    return apply_ev(srgb, ev_map(evs, labels, srgb, **upsample_kw)[..., None])


def render(srgb: np.ndarray, recipe: Recipe, *, renderer: str | None = None, strength: float = 1.0) -> np.ndarray:
    """Render ``recipe`` on a float32 sRGB [0,1] (H, W, 3) photo; ``strength`` in [0, 1] scales every EV."""
    name = renderer or recipe.renderer
    if name not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}; choose from {', '.join(RENDERERS)}")
    evs = [e * float(strength) for e in recipe.evs]
    if name == "fusion":
        if strength == 0:
            return np.asarray(srgb, np.float32).copy()
        return render_fusion(srgb, evs)
    if recipe.labels is None:
        if len(evs) != 1:
            raise ValueError("the local renderer needs segment labels (or exactly one EV)")
        return apply_ev(srgb, evs[0])
    return render_local(srgb, evs, recipe.labels)
