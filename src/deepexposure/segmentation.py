"""Segmentation of the 64x64 preview into the sub-images an episode handles, one per step.

Felzenszwalb-Huttenlocher graph segmentation (``skimage.segmentation.felzenszwalb``) of the preview, then
merged down to at most ``max_segments`` regions: the smallest region is repeatedly merged into the adjacent
region closest in mean CIELAB colour (the paper is silent on how the segments are limited; this keeps big,
coherent regions). Labels are then numbered in a fixed order: ascending mean luminance (darker regions
first), ties broken by larger area then by first pixel in raster order, so step t has a stable meaning.

Full-resolution soft masks are the hard preview masks refined by a guided filter (He et al. 2010) guided by
the photo's luminance, so a local edit follows image edges without blocky or haloed borders. The guided
filter is written with ``cv2.boxFilter`` because ``cv2.ximgproc`` is only in opencv-contrib.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.color import rgb2lab
from skimage.segmentation import felzenszwalb, find_boundaries

from deepexposure.color import luminance

__all__ = [
    "PREVIEW_SIZE",
    "SEGMENT_DEFAULTS",
    "make_preview",
    "felzenszwalb_labels",
    "segment",
    "masks_from_labels",
    "soft_masks",
    "guided_filter",
    "upsample_map",
    "overlay",
]

PREVIEW_SIZE = 64
#: Felzenszwalb parameters for a 64x64 preview (measured on BSDS/DICM previews: ~10-30 regions before merging).
SEGMENT_DEFAULTS = {"max_segments": 6, "scale": 40.0, "sigma": 0.5, "min_size": 20}


def make_preview(srgb: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """Area-resample a float32 sRGB (H, W, 3) image to (size, size, 3); the aspect ratio is not kept (paper)."""
    return cv2.resize(np.asarray(srgb, dtype=np.float32), (size, size), interpolation=cv2.INTER_AREA)


def felzenszwalb_labels(preview: np.ndarray, *, scale: float, sigma: float, min_size: int) -> np.ndarray:
    """scikit-image's Felzenszwalb-Huttenlocher segmentation of an sRGB [0,1] preview -> int32 labels."""
    return felzenszwalb(np.asarray(preview, dtype=np.float64), scale=scale, sigma=sigma,
                        min_size=min_size, channel_axis=-1).astype(np.int32)


def _relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    _, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int32)


def _adjacency(labels: np.ndarray, n: int) -> np.ndarray:
    adj = np.zeros((n, n), dtype=bool)
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = a != b
        adj[a[m], b[m]] = True
        adj[b[m], a[m]] = True
    return adj


def _merge_to(labels: np.ndarray, lab: np.ndarray, max_segments: int) -> np.ndarray:
    labels = _relabel_consecutive(labels)
    n = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).astype(np.float64)
    colour_sum = np.stack([np.bincount(flat, weights=lab[..., c].ravel(), minlength=n) for c in range(3)], axis=1)
    adj = _adjacency(labels, n)
    parent = np.arange(n)
    alive = np.ones(n, dtype=bool)
    count = n
    while count > max_segments:
        idx = np.flatnonzero(alive)
        small = idx[np.lexsort((idx, area[idx]))[0]]  # smallest area, lowest id on ties
        nbrs = np.flatnonzero(adj[small] & alive)
        if nbrs.size == 0:  # isolated (cannot happen on a connected grid); merge with the closest region
            nbrs = idx[idx != small]
        mean = colour_sum / area[:, None]
        dist = np.linalg.norm(mean[nbrs] - mean[small], axis=1)
        target = nbrs[np.lexsort((nbrs, dist))[0]]
        parent[parent == small] = target
        area[target] += area[small]
        colour_sum[target] += colour_sum[small]
        adj[target] |= adj[small]
        adj[:, target] |= adj[:, small]
        adj[target, target] = False
        alive[small] = False
        adj[small] = False
        adj[:, small] = False
        count -= 1
    return parent[labels]


def segment(
    preview: np.ndarray,
    *,
    max_segments: int = SEGMENT_DEFAULTS["max_segments"],
    scale: float = SEGMENT_DEFAULTS["scale"],
    sigma: float = SEGMENT_DEFAULTS["sigma"],
    min_size: int = SEGMENT_DEFAULTS["min_size"],
) -> np.ndarray:
    """Segment an sRGB [0,1] preview (h, w, 3) into at most ``max_segments`` regions.

    Returns int32 labels (h, w) numbered 0..n-1 in episode order (darkest mean luminance first; ties: larger
    area first, then first pixel in raster order). Every label is non-empty; deterministic.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be >= 1")
    preview = np.clip(np.asarray(preview, dtype=np.float32), 0, 1)
    labels = felzenszwalb_labels(preview, scale=scale, sigma=sigma, min_size=min_size)
    labels = _merge_to(labels, rgb2lab(preview), max_segments)
    labels = _relabel_consecutive(labels)
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
    """Hard one-hot masks (n, h, w) float32 of int labels (h, w); ``n`` defaults to labels.max() + 1."""
    n = int(labels.max()) + 1 if n is None else n
    return (labels[None] == np.arange(n)[:, None, None]).astype(np.float32)


def guided_filter(guide: np.ndarray, src: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He et al.): edge-aware smoothing of ``src`` (H, W) or (H, W, C) by ``guide`` (H, W).

    ``radius`` in pixels, ``eps`` the regularisation (guide in [0,1] units). float32 in and out.
    """
    g = np.asarray(guide, dtype=np.float32)
    s = np.asarray(src, dtype=np.float32)
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_g = box(g)
    var_g = box(g * g) - mean_g * mean_g
    if s.ndim == 3:
        mean_g, var_g, g = mean_g[..., None], var_g[..., None], g[..., None]
    mean_s = box(s)
    cov = box((g if s.ndim == 2 else g) * s) - mean_g * mean_s
    a = cov / (var_g + eps)
    b = mean_s - a * mean_g
    return (box(a) * g + box(b)).astype(np.float32)


def _working_size(shape: tuple[int, int], long_edge: int) -> tuple[int, int]:
    h, w = shape
    f = min(1.0, long_edge / max(h, w))
    return max(1, round(w * f)), max(1, round(h * f))


def upsample_map(values: np.ndarray, guide_srgb: np.ndarray, *, working_long_edge: int = 512,
                 radius: int = 8, eps: float = 1e-3) -> np.ndarray:
    """Upsample a low-resolution map (h, w) or (h, w, C) to the guide's full size, following its edges.

    The map is resized (bilinear) to a working resolution (long edge ``working_long_edge``), refined there by a
    guided filter on the guide's luminance, then resized (bilinear) to full size — smooth, so no blocks appear.
    """
    H, W = guide_srgb.shape[:2]
    ws = _working_size((H, W), working_long_edge)
    small_guide = cv2.resize(np.asarray(guide_srgb, np.float32), ws, interpolation=cv2.INTER_AREA)
    y = np.sqrt(np.clip(luminance(small_guide), 0, 1))  # perceptual-ish guide
    v = cv2.resize(np.asarray(values, np.float32), ws, interpolation=cv2.INTER_LINEAR)
    v = guided_filter(y, v, radius=radius, eps=eps)
    return cv2.resize(v, (W, H), interpolation=cv2.INTER_LINEAR)


def soft_masks(labels: np.ndarray, guide_srgb: np.ndarray, *, working_long_edge: int = 512,
               radius: int = 8, eps: float = 1e-3) -> np.ndarray:
    """Full-resolution edge-aware soft masks (n, H, W) float32 in [0, 1], summing to 1 at every pixel.

    Hard preview masks are upsampled by :func:`upsample_map` (guided by the photo), clipped at 0 and renormalised.
    """
    n = int(labels.max()) + 1
    hard = masks_from_labels(labels, n).transpose(1, 2, 0)  # (h, w, n)
    if n == 1:
        return np.ones((1, *guide_srgb.shape[:2]), np.float32)
    chunks = [upsample_map(hard[..., i:i + 4], guide_srgb, working_long_edge=working_long_edge,
                           radius=radius, eps=eps) for i in range(0, n, 4)]  # cv2 filters take <= 4 channels
    soft = np.concatenate([c[..., None] if c.ndim == 2 else c for c in chunks], axis=2)
    soft = np.clip(soft, 0, None)
    soft /= np.maximum(soft.sum(axis=2, keepdims=True), 1e-6)
    return np.ascontiguousarray(soft.transpose(2, 0, 1))


_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], np.float32)


def overlay(srgb: np.ndarray, labels: np.ndarray, *, tint: float = 0.3) -> np.ndarray:
    """Draw segments over a full-resolution sRGB [0,1] photo -> uint8 (H, W, 3): tint, boundaries, step numbers."""
    H, W = srgb.shape[:2]
    up = cv2.resize(labels.astype(np.int32), (W, H), interpolation=cv2.INTER_NEAREST)
    colours = _PALETTE[up % len(_PALETTE)] / 255.0
    img = (1 - tint) * np.asarray(srgb, np.float32) + tint * colours
    img[find_boundaries(up, mode="thick")] = 1.0
    out = np.ascontiguousarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
    scale = max(0.5, min(H, W) / 400)
    for k in range(int(labels.max()) + 1):
        ys, xs = np.nonzero(up == k)
        if ys.size == 0:
            continue
        cy, cx = int(np.median(ys)), int(np.median(xs))
        for colour, thick in (((0, 0, 0), 4), ((255, 255, 255), 2)):
            cv2.putText(out, str(k), (cx, cy), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                        max(1, int(thick * scale)), cv2.LINE_AA)
    return out
