"""Segmentation of the 64x64 preview into the sub-images an episode handles, one per step.

Felzenszwalb-Huttenlocher graph segmentation (``skimage.segmentation.felzenszwalb``) of the preview; thin
regions (the 1-2 px strips it leaves along blurred edges) are absorbed into their most similar neighbour; then
regions are merged down to at most ``max_segments`` on the region adjacency graph with Ward's criterion: the
adjacent pair whose merge adds the least colour variance (``a_i a_j / (a_i + a_j) * |mean_i - mean_j|^2``,
areas ``a`` in preview pixels, means in CIELAB) is merged first. The paper is silent on how the number of
segments is limited; Ward's rule absorbs small regions into similar neighbours while keeping large, different
regions (sky, shadow) apart. Labels are then numbered in a fixed order: ascending mean luminance (darker
regions first), ties broken by larger area then by first pixel in raster order, so step t has a stable meaning.

Full-resolution soft masks are the hard preview masks refined by a guided filter (He et al. 2010), guided by
the photo's grey level, so a local edit follows image edges without blocky or haloed borders. The filter runs
at a working resolution (long edge ``working_long_edge``) and its linear coefficients are upsampled and applied
to the full-resolution guide ("fast guided filter", He & Sun 2015), so transitions stay sharp at full size.
The guided filter is written with ``cv2.boxFilter`` because ``cv2.ximgproc`` is only in opencv-contrib.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from deepexposure.image.color import luminance

__all__ = [
    "PREVIEW_SIZE",
    "SEGMENTATION_VERSION",
    "SEGMENT_DEFAULTS",
    "SOFT_MASK_DEFAULTS",
    "segmentation_params",
    "make_preview",
    "felzenszwalb_labels",
    "merge_regions",
    "segment",
    "masks_from_labels",
    "guided_filter",
    "upsample_map",
    "soft_masks",
    "segment_map",
    "overlay",
]

PREVIEW_SIZE = 64
#: Bumped whenever :func:`segment` changes its output for the same parameters (2: thin-strip absorption and
#: Ward merging); caches of labels and trained policies should record it.
SEGMENTATION_VERSION = 2
#: The segmentation parameters: those the shipped policy was trained with (stored in its config as
#: ``"segmentation"``, from :meth:`deepexposure.learning.config.TrainConfig.segmentation`) and the default of every user:
#: :func:`segment`, ``RLConfig.seg_*``, manual ``local`` recipes, ``deepexposure segment`` and the oracle-recipe
#: baseline. Where a policy is involved its own stored values are used (:func:`segmentation_params`). Change these
#: only together with a policy trained with the new values (tests/test_segmentation_params.py checks they agree).
#: Measured on 51 real previews (15 BSDS500 test, 15 DICM, 10 SUN, 11 SICE): scale 40 / min_size 20 gives a median
#: of 44 Felzenszwalb regions (10th-90th percentile 26-61), mostly texture fragments at this size, that thin-strip
#: absorption and Ward merging reduce to at most ``max_segments``; scale 300 / min_size 30 would give 11 (7-17).
SEGMENT_DEFAULTS: Mapping[str, Any] = MappingProxyType({"max_segments": 6, "scale": 40.0, "sigma": 0.5, "min_size": 20})
#: Soft-mask parameters: ``feather`` = guided-filter radius in preview pixels (along the long edge),
#: ``eps`` = guided-filter regularisation in grey-level units squared (edges of contrast >> 2*sqrt(eps) are
#: followed), ``working_long_edge`` = long edge in pixels of the resolution the filter runs at.
SOFT_MASK_DEFAULTS = {"feather": 2.0, "eps": 1e-3, "working_long_edge": 1024}


def segmentation_params(stored: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """All keyword arguments of :func:`segment`: :data:`SEGMENT_DEFAULTS`, updated by the known keys of ``stored``
    (e.g. a policy's ``config["segmentation"]`` or a recipe's ``segmentation``), then by ``overrides`` not None."""
    params = dict(SEGMENT_DEFAULTS)
    params.update({k: v for k, v in (stored or {}).items() if k in SEGMENT_DEFAULTS})
    for k, v in overrides.items():
        if k not in SEGMENT_DEFAULTS:
            raise TypeError(f"unknown segmentation parameter {k!r}")
        if v is not None:
            params[k] = v
    return params


def make_preview(srgb: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """Area-resample an sRGB [0,1] (H, W, 3) image to float32 (size, size, 3); the aspect ratio is not kept (paper)."""
    img = np.asarray(srgb, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def reduce_long_edge(img: np.ndarray, long_edge: int) -> np.ndarray:
    """Area-downscale an (H, W[, C]) image so that its long edge is at most ``long_edge`` px (aspect kept, never
    upscaled); an image already small enough is returned as it is (same object, same dtype)."""
    h, w = img.shape[:2]
    size = _working_size((h, w), long_edge)
    return img if size == (w, h) else cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def felzenszwalb_labels(preview: np.ndarray, *, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """scikit-image's Felzenszwalb-Huttenlocher segmentation of an sRGB [0,1] (h, w, 3) preview -> int32 (h, w).

    ``scale`` is in 0-255 colour units (scikit-image divides it by 255 for float images), ``sigma`` the
    pre-smoothing in pixels, ``min_size`` the smallest region in pixels. Labels as scikit-image numbers them.
    """
    from skimage.segmentation import felzenszwalb  # lazily: scikit-image (and SciPy) cost 0.27 s of start-up

    return felzenszwalb(np.asarray(preview, dtype=np.float64), scale=scale, sigma=sigma,
                        min_size=min_size, channel_axis=-1).astype(np.int32)


def _relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    _, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int32)


def _adjacency(labels: np.ndarray, n: int) -> np.ndarray:
    """4-connected region adjacency matrix (n, n) bool."""
    adj = np.zeros((n, n), dtype=bool)
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = a != b
        adj[a[m], b[m]] = True
        adj[b[m], a[m]] = True
    return adj


def _eroded_area(mask: np.ndarray) -> int:
    """Pixels of a binary mask whose whole 3x3 neighbourhood is in the mask (image border counts as inside)."""
    return int(cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                         borderValue=1).sum())


def merge_regions(labels: np.ndarray, preview: np.ndarray, *, max_segments: int,
                  absorb_thin: bool = True) -> np.ndarray:
    """Merge the regions of a label image (h, w) of an sRGB [0,1] preview (h, w, 3) -> int32 labels (h, w).

    1. ``absorb_thin``: every thin region (fewer than a quarter of its pixels survive a 3x3 erosion, e.g. the
       1-2 px strips Felzenszwalb leaves along blurred edges) is merged, smallest first, into the adjacent
       region with the lowest Ward cost, until no thin region is left (or one region remains).
    2. While more than ``max_segments`` regions remain, the adjacent pair with the lowest Ward cost
       ``a_i a_j / (a_i + a_j) * |mean_i - mean_j|^2`` (areas in pixels, means in CIELAB) is merged.
    Ties go to the lowest region ids (scikit-image's order). Labels are returned numbered 0..n-1 in the order of the
    surviving input ids, not yet in episode order (see :func:`segment`).
    """
    labels = _relabel_consecutive(labels)
    n = int(labels.max()) + 1
    from skimage.color import rgb2lab  # lazily, as felzenszwalb

    lab = rgb2lab(np.clip(np.asarray(preview, np.float32), 0.0, 1.0))
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).astype(np.float64)
    mean = np.stack([np.bincount(flat, weights=lab[..., c].ravel(), minlength=n) for c in range(3)], axis=1)
    mean /= area[:, None]
    adj = _adjacency(labels, n)
    parent = np.arange(n)
    alive = np.ones(n, dtype=bool)

    def ward_cost() -> np.ndarray:
        d2 = ((mean[:, None, :] - mean[None, :, :]) ** 2).sum(-1)
        cost = area[:, None] * area[None, :] / (area[:, None] + area[None, :]) * d2
        cost[~(adj & alive[:, None] & alive[None, :])] = np.inf
        return cost

    def merge(i: int, j: int) -> int:
        """Merge regions i and j into the lower id; returns it."""
        i, j = min(i, j), max(i, j)
        mean[i] = (area[i] * mean[i] + area[j] * mean[j]) / (area[i] + area[j])
        area[i] += area[j]
        parent[parent == j] = i
        adj[i] |= adj[j]
        adj[:, i] |= adj[:, j]
        adj[i, i] = False
        adj[j] = False
        adj[:, j] = False
        alive[j] = False
        return i

    if absorb_thin:
        thin = {r for r in range(n) if _eroded_area(labels == r) < area[r] / 4}
        while thin and alive.sum() > 1:
            r = min(thin, key=lambda k: (area[k], k))
            thin.discard(r)
            cost = ward_cost()[r]
            if not np.isfinite(cost).any():
                continue
            t = int(np.argmin(cost))
            thin.discard(t)
            m = merge(r, t)
            if _eroded_area(parent[labels] == m) < area[m] / 4:
                thin.add(m)
    while alive.sum() > max_segments:
        cost = ward_cost()
        cost[np.tril_indices(n)] = np.inf
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)  # first minimum: lowest (i, j) on ties
        if not np.isfinite(cost[i, j]):  # disconnected leftovers (impossible on a 4-connected grid)
            break
        merge(int(i), int(j))
    return _relabel_consecutive(parent[labels])


def segment(
    preview: np.ndarray,
    *,
    max_segments: int = SEGMENT_DEFAULTS["max_segments"],
    scale: float = SEGMENT_DEFAULTS["scale"],
    sigma: float = SEGMENT_DEFAULTS["sigma"],
    min_size: int = SEGMENT_DEFAULTS["min_size"],
    absorb_thin: bool = True,
) -> np.ndarray:
    """Segment an sRGB [0,1] preview (h, w, 3) into at most ``max_segments`` regions.

    Felzenszwalb-Huttenlocher (:func:`felzenszwalb_labels`), then thin regions absorbed and Ward merging on
    the region adjacency graph (:func:`merge_regions`). Returns int32 labels (h, w) numbered 0..n-1 in episode order: ascending mean Rec.709
    luminance (darkest first; means rounded to 1e-6), ties broken by larger area first, then by the first
    pixel in raster order. Every label is non-empty; a constant image gives one segment; deterministic.
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be >= 1, got {max_segments}")
    preview = np.clip(np.asarray(preview, dtype=np.float32), 0.0, 1.0)
    labels = felzenszwalb_labels(preview, scale=scale, sigma=sigma, min_size=min_size)
    labels = merge_regions(labels, preview, max_segments=max_segments, absorb_thin=absorb_thin)
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n)
    lum = np.bincount(flat, weights=luminance(preview).ravel(), minlength=n) / area
    first = np.full(n, flat.size)
    np.minimum.at(first, flat, np.arange(flat.size))
    order = np.lexsort((first, -area, np.round(lum, 6)))
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    return rank[labels]


def masks_from_labels(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Hard one-hot masks (n, h, w) float32 {0, 1} of int labels (h, w); ``n`` defaults to labels.max() + 1."""
    labels = np.asarray(labels)
    n = int(labels.max()) + 1 if n is None else int(n)
    return (labels[None] == np.arange(n)[:, None, None]).astype(np.float32)


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    return cv2.boxFilter(x, -1, (k, k), borderType=cv2.BORDER_REFLECT)


def _guided_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-averaged linear coefficients (A, B) of the grey-guide guided filter: output = A * guide + B."""
    g = guide
    mean_g = _box(g, radius)
    var_g = _box(g * g, radius) - mean_g * mean_g
    if src.ndim == 3:
        mean_g, var_g, g = mean_g[..., None], var_g[..., None], g[..., None]
    mean_s = _box(src, radius)
    a = _box(g * src, radius) - mean_g * mean_s
    a /= np.maximum(var_g, 0.0) + np.float32(eps)
    b = mean_s - a * mean_g
    return _box(a, radius), _box(b, radius)


def guided_filter(guide: np.ndarray, src: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He et al. 2010): edge-aware smoothing of ``src`` (H, W) or (H, W, C) by ``guide`` (H, W).

    ``radius`` in pixels (window 2r+1), ``eps`` the regularisation in guide units squared. float32 in and out.
    """
    g = np.asarray(guide, dtype=np.float32)
    s = np.asarray(src, dtype=np.float32)
    a, b = _guided_coefficients(g, s, int(radius), eps)
    if s.ndim == 3:
        g = g[..., None]
    return (a * g + b).astype(np.float32)


def _grey(srgb: np.ndarray) -> np.ndarray:
    """Gamma-encoded grey level (H, W) float32 of sRGB [0,1] (OpenCV's RGB2GRAY weights): the guide."""
    return cv2.cvtColor(np.asarray(srgb, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def _working_size(shape: tuple[int, int], long_edge: int) -> tuple[int, int]:
    """(width, height) with the long edge at most ``long_edge``."""
    h, w = shape
    f = min(1.0, long_edge / max(h, w))
    return max(1, round(w * f)), max(1, round(h * f))


def _working_coefficients(values: np.ndarray, guide_full: np.ndarray, *, feather: float, eps: float,
                          working_long_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Guided-filter coefficients (A, B) of a low-resolution map (h, w[, C]) at the working resolution."""
    H, W = guide_full.shape
    ws = _working_size((H, W), working_long_edge)
    g = cv2.resize(guide_full, ws, interpolation=cv2.INTER_AREA) if ws != (W, H) else guide_full
    # nearest: a sharp step at the preview cell border fits a sharp photo edge; a bilinear ramp would not
    v = cv2.resize(np.asarray(values, np.float32), ws, interpolation=cv2.INTER_NEAREST)
    radius = max(1, round(feather * max(ws) / max(values.shape[:2])))
    return _guided_coefficients(g, v, radius, eps)


def _apply_coefficients(a: np.ndarray, b: np.ndarray, guide_full: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``upsample(A) * guide + upsample(B)`` for one channel (h, w) -> (H, W) float32 (bilinear upsampling)."""
    H, W = guide_full.shape
    if a.shape != (H, W):
        out = cv2.resize(np.ascontiguousarray(a), (W, H), dst=out, interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(np.ascontiguousarray(b), (W, H), interpolation=cv2.INTER_LINEAR)
    elif out is None:
        out = a.copy()
    else:
        out[...] = a
    out *= guide_full
    out += b
    return out


def upsample_map(values: np.ndarray, guide_srgb: np.ndarray, *, feather: float = SOFT_MASK_DEFAULTS["feather"],
                 eps: float = SOFT_MASK_DEFAULTS["eps"],
                 working_long_edge: int = SOFT_MASK_DEFAULTS["working_long_edge"]) -> np.ndarray:
    """Upsample a low-resolution map (h, w) or (h, w, C) to the guide's full size (H, W[, C]), following its edges.

    The map is resized (nearest) to the working resolution, guided-filtered there (radius ``feather`` map
    pixels along the long edge) by the guide's grey level, and the filter's linear coefficients are upsampled
    (bilinear) and applied to the full-resolution grey level (fast guided filter). ``guide_srgb``: (H, W, 3)
    sRGB [0,1]. float32 out; values may overshoot the input range slightly near edges (clip if needed).
    """
    g = _grey(guide_srgb)
    a, b = _working_coefficients(values, g, feather=feather, eps=eps, working_long_edge=working_long_edge)
    if a.ndim == 2:
        return _apply_coefficients(a, b, g)
    return np.stack([_apply_coefficients(a[..., k], b[..., k], g) for k in range(a.shape[2])], axis=2)


def soft_masks(labels: np.ndarray, guide_srgb: np.ndarray, *, feather: float = SOFT_MASK_DEFAULTS["feather"],
               eps: float = SOFT_MASK_DEFAULTS["eps"],
               working_long_edge: int = SOFT_MASK_DEFAULTS["working_long_edge"]) -> np.ndarray:
    """Full-resolution edge-aware soft masks (n, H, W) float32 in [0, 1], summing to 1 at every pixel.

    ``labels``: (h, w) int segment labels (the preview's); ``guide_srgb``: (H, W, 3) sRGB [0,1] photo. Each hard
    mask is upsampled by :func:`upsample_map` (parameters there), clipped at 0 and the masks renormalised.
    """
    labels = np.asarray(labels)
    n = int(labels.max()) + 1
    H, W = guide_srgb.shape[:2]
    if n == 1:
        return np.ones((1, H, W), np.float32)
    g = _grey(guide_srgb)
    hard = masks_from_labels(labels, n).transpose(1, 2, 0)
    a, b = _working_coefficients(hard, g, feather=feather, eps=eps, working_long_edge=working_long_edge)
    out = np.empty((n, H, W), np.float32)
    for k in range(n):
        _apply_coefficients(a[..., k], b[..., k], g, out=out[k])
    np.maximum(out, 0.0, out=out)
    total = out.sum(axis=0)
    np.maximum(total, 1e-6, out=total)
    out /= total
    return out


def segment_map(labels: np.ndarray, values, guide_srgb: np.ndarray, *,
                feather: float = SOFT_MASK_DEFAULTS["feather"], eps: float = SOFT_MASK_DEFAULTS["eps"],
                working_long_edge: int = SOFT_MASK_DEFAULTS["working_long_edge"]) -> np.ndarray:
    """Full-resolution edge-aware map (H, W) float32 holding ``values[k]`` inside segment k (e.g. EV stops).

    One channel is filtered instead of n masks: the guided filter is linear, so this equals
    ``sum_k values[k] * mask_k`` with the masks of :func:`soft_masks` before their clip-and-renormalise step.
    The result is clipped to [min(values), max(values)] (no overshoot), so equal values give a constant map.
    """
    labels = np.asarray(labels)
    vals = np.asarray(values, dtype=np.float32).ravel()
    n = int(labels.max()) + 1
    if vals.size != n:
        raise ValueError(f"{vals.size} values for {n} segments")
    H, W = guide_srgb.shape[:2]
    lo, hi = float(vals.min()), float(vals.max())
    if lo == hi:
        return np.full((H, W), lo, np.float32)
    m = upsample_map(vals[labels], guide_srgb, feather=feather, eps=eps, working_long_edge=working_long_edge)
    return np.clip(m, lo, hi, out=m)


_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.float32)


def _label_anchor(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel farthest inside a binary mask (a centroid can fall outside a non-convex segment)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def overlay(srgb: np.ndarray, labels: np.ndarray, *, tint: float = 0.3) -> np.ndarray:
    """Draw segments over a full-resolution sRGB [0,1] photo (H, W, 3) -> uint8 (H, W, 3).

    Labels (h, w) are nearest-upsampled; each segment gets a light colour tint (weight ``tint``), boundaries
    are drawn white (``find_boundaries``, thickened with the image size) and the segment index (episode step)
    is written at the point deepest inside the segment.
    """
    img = np.asarray(srgb, np.float32)
    labels = np.asarray(labels, np.int32)
    H, W = img.shape[:2]
    up = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST)
    out = (1 - tint) * img + tint * (_PALETTE[up % len(_PALETTE)] / 255.0)
    from skimage.segmentation import (
        find_boundaries,  # only here: it imports skimage.morphology and scipy.spatial
    )

    edges = find_boundaries(up, mode="thick").astype(np.uint8)  # 2 px: both sides of each label change
    thick = round(min(H, W) / 600)
    if thick > 1:
        edges = cv2.dilate(edges, np.ones((thick, thick), np.uint8))
    out[edges.astype(bool)] = 1.0
    out = np.ascontiguousarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8))
    font = max(0.4, min(H, W) / 400)
    sx, sy = W / labels.shape[1], H / labels.shape[0]
    for k in range(int(labels.max()) + 1):
        mask = labels == k
        if not mask.any():
            continue
        x, y = _label_anchor(mask)
        text = str(k)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, max(1, round(2 * font)))
        org = (int((x + 0.5) * sx - tw / 2), int((y + 0.5) * sy + th / 2))
        for colour, weight in (((0, 0, 0), 4), ((255, 255, 255), 2)):
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, font, colour, max(1, round(weight * font)),
                        cv2.LINE_AA)
    return out
