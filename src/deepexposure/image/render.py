"""Renderers: apply a recipe's exposure values (EV stops) to a full-resolution photo.

* ``fusion`` (the paper's test stage): the whole photo is exposed by each EV and the copies plus the original
  are merged by Mertens exposure fusion (:func:`deepexposure.image.fusion.fuse_exposures`).
* ``local`` (the paper's "local" image): each EV is applied inside its own segment, blended in EV space through
  edge-aware soft masks: ``ev_map = sum_k ev_k * mask_k`` then ``apply_ev(srgb, ev_map)`` (a luminosity-mask
  edit; no halos as the masks follow image edges, see :mod:`deepexposure.image.segmentation`).

* ``rolloff`` (ours): the ``local`` EV map with a highlight roll-off instead of the hard clip. Where the exposed
  photo would pass white, linear values above a knee are compressed so that the photo's own brightest tones
  (its 99.5th percentile) land exactly on white: nothing that was not clipped in the input clips in the output,
  and where nothing would clip the result is exactly ``local``'s (so a pure exposure error is still undone).
* ``balanced`` (ours): the ``rolloff`` image, then Mertens fusion of it with copies exposed by
  :data:`BALANCED_BRACKET` (-0.5 and +0.5 EV): a mild local tone mapping around the policy's exposure (shadows
  and highlights balanced as the paper's fusion does), without fusion's pull back towards the original exposure.

All functions take float sRGB in [0, 1], shape (H, W, 3), and return float32 sRGB in [0, 1]; 8/16-bit photos
are converted by the caller (:func:`deepexposure.image.io.to_float` / ``from_float``). Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from deepexposure.errors import DataError
from deepexposure.image.photo import eight_bit_codes, to_float
from deepexposure.image.segmentation import SOFT_MASK_DEFAULTS, reduce_long_edge, segment_map
from deepexposure.logs import stage

if TYPE_CHECKING:
    from deepexposure.image.recipe import Recipe

__all__ = ["RENDERERS", "RENDERER_HELP", "render", "recipe_evs", "render_fusion", "render_local", "render_rolloff",
           "render_balanced", "local_ev_map", "rolloff_white", "guard_highlights", "GUARDED_RENDERERS",
           "HIGHLIGHT_GUARD_PERCENTILE"]

RENDERERS = ("fusion", "local", "rolloff", "balanced")
#: EVs (stops) of the bracket fused around the ``rolloff`` image by the ``balanced`` renderer.
BALANCED_BRACKET = (-0.5, 0.5)
#: Renderer of policies (``--model paper``, run folders) in ``enhance`` and ``evaluate`` unless one is given (see docs/learning.md for the
#: measurements behind the choice).
ENHANCE_RENDERER = "fusion"
#: Renderer of the global-EV (natural) models: one EV with the highlight roll-off (docs/learning.md finding 26).
NATURAL_RENDERER = "rolloff"
#: One-line description of the renderers for command-line help (one source for every command).
RENDERER_HELP = ("fusion: Mertens fusion of the whole photo exposed by each EV plus the original (the paper's test "
                 "stage). local: each EV inside its own edge-aware segment mask, hard clip at white. rolloff: local "
                 "with a highlight roll-off (nothing below white in the photo is blown). balanced: rolloff, then "
                 "Mertens fusion of a +-0.5 EV bracket around it (mild local tone mapping).")
#: ``rolloff``: linear level where the highlight roll-off starts (sRGB ~0.80).
ROLLOFF_KNEE = 0.6
#: ``rolloff``: percentile of the input's per-pixel largest linear channel that is mapped to white.
ROLLOFF_PERCENTILE = 99.5

#: Renderers whose EVs ``enhance`` passes through :func:`guard_highlights` (fusion weights the original up where a
#: copy clips, so it needs no guard: docs/learning.md finding 25).
GUARDED_RENDERERS = ("local", "rolloff", "balanced")
#: :func:`guard_highlights`: percentile of a segment's largest linear channel that a positive EV may bring up to
#: white (95: the brightest 5% of the segment may clip; chosen among 99, 95 and 90 on the real FiveK pairs,
#: docs/learning.md finding 25).
HIGHLIGHT_GUARD_PERCENTILE = 95.0
_GUARD_LONG_EDGE = 512  # working size of guard_highlights (area-resampled: regions, not single pixels, count)

_ROWS = 256  # rows per chunk of the exposure pass (keeps temporaries in cache-friendly, small blocks)


def _as_srgb(srgb: np.ndarray) -> np.ndarray:
    img = np.asarray(srgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) sRGB image, got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"expected float sRGB in [0, 1], got {img.dtype} (convert with deepexposure.image.io.to_float)")
    return img.astype(np.float32, copy=False)


def _check_evs(evs: Sequence[float]) -> np.ndarray:
    e = np.asarray(evs, dtype=np.float64).ravel()
    if not np.all(np.isfinite(e)):
        raise ValueError(f"exposure values must be finite, got {list(e)}")
    return e


def _check_labels(labels: np.ndarray, n_evs: int) -> np.ndarray:
    """``labels`` as an array after checking it is a non-empty 2-D array of integers 0..n_evs-1 (ValueError)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0:
        raise ValueError("labels must be a non-empty 2-D array of non-negative integers")
    if int(labels.max()) + 1 != n_evs:
        raise ValueError(f"{n_evs} exposure values for {int(labels.max()) + 1} segments")
    return labels


def recipe_evs(recipe: Recipe, renderer: str | None = None, strength: float = 1.0) -> tuple[str, np.ndarray]:
    """(renderer name, the recipe's EVs scaled by ``strength``) as :func:`render` applies them: ``renderer``
    defaults to ``recipe.renderer``; an unknown renderer, a strength outside [0, 1] or a non-finite EV raises
    ValueError."""
    name = renderer or recipe.renderer
    if name not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}; valid renderers: {', '.join(RENDERERS)}")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return name, _check_evs(recipe.evs) * float(strength)


def rolloff_white(srgb: np.ndarray, percentile: float = ROLLOFF_PERCENTILE) -> float:
    """The input's bright end for the roll-off: the ``percentile`` of the per-pixel largest linear channel of
    float sRGB (H, W, 3) [0, 1], measured on an area-reduced copy (long edge <= 256) -> linear value in (0, 1]."""
    return float(max(np.percentile(_peak_linear(srgb, 256), percentile), 1e-4))


def _peak_linear(srgb: np.ndarray, long_edge: int) -> np.ndarray:
    """The per-pixel largest linear channel (h, w) float32 of an area-reduced copy (long edge <= ``long_edge``) of
    float sRGB (H, W, 3) [0, 1]: what the highlight roll-off and the highlight guard measure."""
    from deepexposure.image.color import srgb_to_linear

    return srgb_to_linear(reduce_long_edge(np.ascontiguousarray(srgb, np.float32), long_edge)).max(axis=2)


def _shoulder(lin: np.ndarray, gain: np.ndarray, white: float, knee: float) -> None:
    """In place: values above ``knee`` follow ``k + r t / (1 + c t)`` (t = (v - k) / r, r = 1 - k) with ``c``
    per pixel such that ``gain * white`` maps to 1 (slope 1 at the knee, monotone); ``c = 0`` (unchanged) where
    ``gain * white <= 1``. Then clip to [0, 1]. ``lin`` (h, w, 3), ``gain`` (h, w)."""
    f = np.float32
    r = f(1.0 - knee)
    top = np.maximum(gain * f(white), f(1.0))
    c = (f(1.0) - r / np.maximum(top - f(knee), r))[..., None]
    t = np.maximum(lin - f(knee), 0.0) / r
    rolled = f(knee) + r * t / (f(1.0) + c * t)
    np.copyto(lin, rolled, where=lin > f(knee))


def _apply_ev_map(srgb: np.ndarray, ev_map: np.ndarray, *, rolloff: bool = False,
                  knee: float = ROLLOFF_KNEE, white: float | None = None) -> np.ndarray:
    """``color.apply_ev(srgb, ev_map[..., None])`` in row chunks with OpenCV's vectorised ``pow``.

    Same formula (IEC 61966-2-1 decode, gain 2**ev, clip at 1, encode); agrees with ``color.apply_ev`` to
    within 1e-6 (tested) and is about 3x faster at 12 MP, which is why it is written out here. ``rolloff``:
    the highlight roll-off of the ``rolloff`` renderer (:func:`_shoulder`) instead of the hard clip, up to
    ``white`` (default :func:`rolloff_white` of ``srgb``).
    """
    out = np.empty(srgb.shape, np.float32)
    f = np.float32
    if white is None:
        white = rolloff_white(srgb) if rolloff else 1.0
    for r0 in range(0, srgb.shape[0], _ROWS):
        x = np.clip(srgb[r0:r0 + _ROWS], 0.0, 1.0)
        gain = np.exp2(ev_map[r0:r0 + _ROWS].astype(np.float32))
        hi = cv2.pow((x + f(0.055)) * f(1 / 1.055), 2.4)
        lin = np.where(x <= f(0.04045), x * f(1 / 12.92), hi)
        lin *= gain[..., None]
        if rolloff:
            _shoulder(lin, gain, white, knee)
        np.clip(lin, 0.0, 1.0, out=lin)
        hi = cv2.pow(lin, 1 / 2.4)
        hi *= f(1.055)
        hi -= f(0.055)
        out[r0:r0 + _ROWS] = np.where(lin <= f(0.0031308), lin * f(12.92), hi)
    return out


def guard_highlights(srgb: np.ndarray, evs: Sequence[float], labels: np.ndarray, *,
                     percentile: float = HIGHLIGHT_GUARD_PERCENTILE) -> list[float]:
    """Lower every positive EV (stops) so that its segment's ``percentile`` of the largest linear channel reaches
    at most white: ``min(ev, max(0, -log2(p)))``. Negative and zero EVs are kept. A bright sky that shares the
    policy's +1.5 EV with a dark building keeps its own exposure instead of being pushed to white.

    ``srgb``: float (H, W, 3) sRGB [0,1]; ``labels``: (h, w) int segment labels 0..len(evs)-1 (the preview's),
    compared with an area-resampled copy of the photo (long edge <= 512). Returns the EVs as a list of floats.
    """
    img = _as_srgb(srgb)
    e = _check_evs(evs)
    labels = _check_labels(labels, e.size)
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if not np.any(e > 0):
        return [float(v) for v in e]
    peak = _peak_linear(img, _GUARD_LONG_EDGE)
    lab = cv2.resize(labels.astype(np.int32), (peak.shape[1], peak.shape[0]), interpolation=cv2.INTER_NEAREST)
    out = []
    for k, ev in enumerate(e):
        vals = peak[lab == k]
        if ev <= 0 or vals.size == 0:
            out.append(float(ev))
            continue
        p = float(np.percentile(vals, percentile))
        out.append(float(min(ev, max(0.0, -np.log2(max(p, 1e-6))))))
    return out


def global_table(srgb: np.ndarray, ev: float, *, rolloff: bool, knee: float = ROLLOFF_KNEE
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """One global EV (with or without the roll-off) on an 8-bit photo is a function of each channel's code: so
    ``(codes uint8 (H, W, 3), table float32 (256,))`` with ``table[codes]`` equal to
    ``_apply_ev_map(srgb, full(ev), rolloff=rolloff, knee=knee)`` (each entry computed by the same float32 code,
    within 1 ulp of it: OpenCV's ``pow`` may round the few scalar tail elements of a row block differently), or
    None when ``srgb`` is not exactly k/255 everywhere (16-bit and processed photos keep the per-pixel path).
    12 MP: one 256-entry table and a ``cv2.LUT`` instead of the whole per-pixel pass (0.6-1.1 s).
    ``srgb`` may also be the uint8 codes themselves."""
    codes = srgb if _is_codes(srgb) else eight_bit_codes(srgb)
    if codes is None:
        return None
    white = rolloff_white(to_float(codes)[0] if srgb is codes else srgb) if rolloff else 1.0
    ident = np.repeat(np.arange(256, dtype=np.float32) / np.float32(255), 64).reshape(256, 64, 1)
    ident = np.ascontiguousarray(np.broadcast_to(ident, (256, 64, 3)))  # rows of 192 values: SIMD lanes only
    table = _apply_ev_map(ident, np.full((256, 64), ev, np.float32), rolloff=rolloff, knee=knee, white=white)
    return codes, np.ascontiguousarray(table[:, 0, 0])


def render_fusion(srgb: np.ndarray, evs: Sequence[float], *, fast: bool = False, **fusion_kw) -> np.ndarray:
    """The fusion renderer: Mertens fusion of the original and ``apply_ev(srgb, ev)`` for each ev (EV stops).

    ``srgb``: (H, W, 3) float32 sRGB [0,1]. The exact (tiled) fusion is the default at every size: it is about
    4x faster than OpenCV's at 12 MP with a sixth of the memory (benchmarks/fusion.py), while ``fast=True``
    (guided-gain approximation) is only 29-38 dB from it on 12 MP photos, so it stays opt-in (see
    :mod:`deepexposure.image.fusion` for why it cannot reach 38 dB and stay fast).
    ``fusion_kw`` go to :func:`deepexposure.image.fusion.fuse_exposures`.
    Returns float32 sRGB [0,1].
    """
    # imported lazily: the local renderer does not need the fusion module
    from deepexposure.image.fusion import fuse_exposures

    return fuse_exposures(srgb, [float(e) for e in _check_evs(evs)], fast=fast, **fusion_kw)


def local_ev_map(srgb: np.ndarray, evs: Sequence[float], labels: np.ndarray, *,
                 feather: float = SOFT_MASK_DEFAULTS["feather"], eps: float = SOFT_MASK_DEFAULTS["eps"],
                 working_long_edge: int = SOFT_MASK_DEFAULTS["working_long_edge"]) -> np.ndarray:
    """The full-resolution EV map (H, W) float32 (stops) of the local renderer: ``evs[k]`` inside segment k.

    ``labels``: (h, w) int segment labels (the 64x64 preview's), numbered 0..len(evs)-1. Edge-aware blending
    by :func:`deepexposure.image.segmentation.segment_map` (parameters there); values lie in [min(evs), max(evs)].
    """
    img = _as_srgb(srgb)
    e = _check_evs(evs)
    labels = _check_labels(labels, e.size)
    return segment_map(labels, e, img, feather=feather, eps=eps, working_long_edge=working_long_edge)


def render_local(srgb: np.ndarray, evs: Sequence[float], labels: np.ndarray, *,
                 feather: float = SOFT_MASK_DEFAULTS["feather"], eps: float = SOFT_MASK_DEFAULTS["eps"],
                 working_long_edge: int = SOFT_MASK_DEFAULTS["working_long_edge"]) -> np.ndarray:
    """The local renderer: each EV applied inside its own soft segment mask, at full resolution.

    ``srgb``: (H, W, 3) float32 sRGB [0,1]; ``evs``: one EV (stops) per segment; ``labels``: (h, w) int labels.
    Equivalent to ``color.apply_ev(srgb, local_ev_map(...)[..., None])``; equal EVs everywhere give exactly the
    global exposure (the map is constant). Returns float32 sRGB [0,1].
    """
    ev_map = local_ev_map(srgb, evs, labels, feather=feather, eps=eps, working_long_edge=working_long_edge)
    return _apply_ev_map(_as_srgb(srgb), ev_map)


def render_rolloff(srgb: np.ndarray, evs: Sequence[float], labels: np.ndarray | None, *,
                   knee: float = ROLLOFF_KNEE, feather: float = SOFT_MASK_DEFAULTS["feather"],
                   eps: float = SOFT_MASK_DEFAULTS["eps"],
                   working_long_edge: int = SOFT_MASK_DEFAULTS["working_long_edge"]) -> np.ndarray:
    """The rolloff renderer: :func:`render_local`'s EV map (or one global EV when ``labels`` is None and one EV is
    given) with the highlight roll-off (module doc) above the linear level ``knee``. Float32 sRGB [0,1] in/out."""
    img = _as_srgb(srgb)
    if labels is None:
        e = _check_evs(evs)
        if e.size != 1:
            raise ValueError(f"{e.size} exposure values need segment labels")
        ev_map = np.full(img.shape[:2], e[0], np.float32)
    else:
        ev_map = local_ev_map(img, evs, labels, feather=feather, eps=eps, working_long_edge=working_long_edge)
    return _apply_ev_map(img, ev_map, rolloff=True, knee=knee)


def render_balanced(srgb: np.ndarray, evs: Sequence[float], labels: np.ndarray | None, *,
                    bracket: Sequence[float] = BALANCED_BRACKET, **rolloff_kw) -> np.ndarray:
    """The balanced renderer: :func:`render_rolloff` then :func:`render_fusion` of that image with ``bracket``
    (EV stops). Float32 sRGB [0,1] in and out."""
    return render_fusion(render_rolloff(srgb, evs, labels, **rolloff_kw), list(bracket))


def _is_codes(srgb: np.ndarray) -> bool:
    return isinstance(srgb, np.ndarray) and srgb.dtype == np.uint8 and srgb.ndim == 3 and srgb.shape[2] == 3


def render(srgb: np.ndarray, recipe: Recipe, *, renderer: str | None = None, strength: float = 1.0,
           **renderer_kw) -> np.ndarray:
    """Apply a :class:`~deepexposure.image.recipe.Recipe` to a float32 sRGB [0,1] (H, W, 3) photo -> float32 sRGB [0,1].

    ``srgb`` may also be the photo's uint8 (H, W, 3) codes (read as codes / 255, the same result): the fusion and
    the single global exposure then work on them directly and no float copy of the photo is made.

    ``renderer``: one of :data:`RENDERERS` (default: ``recipe.renderer``). ``strength`` in [0, 1] scales every EV
    (and the ``balanced`` bracket); when all scaled EVs are 0 (e.g. strength 0) the input is returned unchanged
    (a float32 copy).
    A recipe with a look's ``style`` (:mod:`deepexposure.image.look`) gets it after the exposure, scaled by
    ``strength`` too (:func:`deepexposure.image.look.scaled_style`).
    ``renderer_kw`` go to :func:`render_fusion` or :func:`render_local`. The local renderer applied to a
    recipe without labels and with exactly one EV exposes the whole photo by it.
    Raises ValueError for an unknown renderer or a strength outside [0, 1], and
    :class:`~deepexposure.errors.DataError` when the local renderer gets a recipe without segment labels
    and more than one EV.
    """
    name, evs = recipe_evs(recipe, renderer, strength)
    codes = srgb if _is_codes(srgb) else None
    img = _as_srgb(srgb) if codes is None else None
    if name != "fusion" and recipe.labels is None and evs.size != 1:
        raise DataError(f"the {name} renderer needs segment labels; this recipe has none (make it with "
                        f"--renderer {name})")
    from deepexposure.image.look import (
        apply_recipe_style,  # lazily: look imports this module's fusion lazily too
    )

    with stage("render"):
        lut = None
        if name in ("rolloff", "local") and recipe.labels is None and evs.size == 1 and not renderer_kw and evs[0]:
            lut = global_table(img if codes is None else codes, float(evs[0]), rolloff=name == "rolloff")
        if lut is None:
            if codes is not None and not (name == "fusion" and np.any(evs)):
                img = to_float(codes)[0]  # the other renderers work on floats
            out = _render_evs(codes if img is None else img, evs, recipe, name, strength, renderer_kw)
        elif recipe.style is None or strength <= 0:
            out = cv2.LUT(*lut)
    if lut is not None and recipe.style is not None and strength > 0:  # the style reads the table itself
        with stage("style"):
            return apply_recipe_style(None, recipe.style, strength, table=lut)
    with stage("style"):
        return apply_recipe_style(out, recipe.style, strength)


def _render_evs(img: np.ndarray, evs: np.ndarray, recipe: Recipe, name: str, strength: float,
                renderer_kw: dict) -> np.ndarray:
    """The exposure part of :func:`render` (the recipe's style is applied after it); ``img`` float, or uint8 codes for
    the fusion."""
    if not np.any(evs):
        return img.copy()
    if name == "fusion":
        return render_fusion(img, evs, **renderer_kw)
    if name == "rolloff":
        return render_rolloff(img, evs, recipe.labels, **renderer_kw)
    if name == "balanced":  # the bracket scales with the strength too, so that strength 0 changes nothing
        kw = {"bracket": [b * float(strength) for b in BALANCED_BRACKET], **renderer_kw}
        return render_balanced(img, evs, recipe.labels, **kw)
    if recipe.labels is None:
        return _apply_ev_map(img, np.full(img.shape[:2], evs[0], np.float32))
    return render_local(img, evs, recipe.labels, **renderer_kw)
