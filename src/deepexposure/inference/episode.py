"""The policy's episode at preview size in numpy (image side, no torch): state, transition, exposure statistics.

The numpy twins of :func:`deepexposure.learning.env.state`, :func:`deepexposure.learning.env.step`,
:func:`deepexposure.learning.env.masks_tensor` and :func:`deepexposure.learning.models.exposure_features`, used by the ONNX Runtime
inference (:mod:`deepexposure.inference.onnx_policy`), which runs the actor once per step and keeps the sequential loop
here. Arrays in the episode are NCHW float32 like the networks' inputs: previews ``s0`` ``(B,3,H,W)`` sRGB [0,1],
masks ``(B,1,H,W)`` in {0,1}; EVs are stops. tests/test_onnx.py checks every function against its torch twin.
"""

from __future__ import annotations

import numpy as np

from deepexposure.image.color import apply_ev, luminance

__all__ = ["STATE_CHANNELS", "EXPOSURE_FEATURES", "LOG_BINS", "PERCENTILES", "hard_masks", "state", "step",
           "exposure_features"]

#: Channels of the state: original preview (3), mask of the current segment (1), image exposed so far (3), t/T (1).
STATE_CHANNELS = 8
#: Bins of the log2-luminance histogram of :func:`exposure_features` (over [-12, 0] stops below white).
LOG_BINS = 24
#: Quantiles of log2 luminance in :func:`exposure_features`.
PERCENTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
#: Length of the :func:`exposure_features` vector (24 + 9 + 2 + 16 = 51).
EXPOSURE_FEATURES = LOG_BINS + len(PERCENTILES) + 2 + 16


def hard_masks(labels: np.ndarray, n_steps: int) -> np.ndarray:
    """Hard masks ``(B,T,H,W)`` float32 from int labels ``(B,H,W)``; labels >= T are merged into the last mask."""
    lab = np.minimum(np.asarray(labels).astype(np.int64), n_steps - 1)
    return (lab[:, None] == np.arange(n_steps)[None, :, None, None]).astype(np.float32)


def state(s0: np.ndarray, mask_t: np.ndarray, cur: np.ndarray, t: int, n_steps: int) -> np.ndarray:
    """Network input ``(B,8,H,W)`` float32: original preview, mask of segment t ``(B,1,H,W)``, current image, t/T."""
    plane = np.full_like(mask_t, t / n_steps, dtype=np.float32)
    return np.concatenate([s0, mask_t, cur, plane], axis=1).astype(np.float32, copy=False)


def step(s0: np.ndarray, cur: np.ndarray, mask_t: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Transition: ``cur`` outside ``mask_t`` ``(B,1,H,W)``, ``apply_ev(s0, ev)`` inside; ``ev`` (B,) stops."""
    ev = np.asarray(ev, dtype=np.float32).reshape(-1, 1, 1, 1)
    return (cur * (1 - mask_t) + apply_ev(s0, ev) * mask_t).astype(np.float32, copy=False)


def _adaptive_mean(x: np.ndarray, out: int) -> np.ndarray:
    """``torch.nn.functional.adaptive_avg_pool2d`` of ``(B,H,W)`` to ``(B,out,out)`` (cell i spans
    ``floor(i*H/out)`` to ``ceil((i+1)*H/out)``)."""
    b, h, w = x.shape
    res = np.empty((b, out, out), np.float32)
    for i in range(out):
        r0, r1 = (i * h) // out, -((-(i + 1) * h) // out)
        for j in range(out):
            c0, c1 = (j * w) // out, -((-(j + 1) * w) // out)
            res[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return res


def exposure_features(previews: np.ndarray) -> np.ndarray:
    """Global exposure statistics ``(B, 51)`` float32 of previews ``(B,H,W,3)`` sRGB [0,1].

    From the log2 of the linear Rec.709 luminance ``L = log2(Y + 2**-12)`` (stops below white, in [-12, 0]):
    a 24-bin linearly binned histogram over [-12, 0] (each value split between its two nearest bin centres,
    summing to 1); its 1/5/10/25/50/75/90/95/99th percentiles / 4 (nearest rank); the fraction of pixels whose
    largest sRGB channel is >= 250/255 and <= 5/255; the mean of ``L`` / 4 in a 4x4 grid.
    """
    x = np.clip(np.asarray(previews, dtype=np.float32), 0.0, 1.0)
    b = x.shape[0]
    ly = np.log2(luminance(x) + np.float32(2.0**-12)).astype(np.float32)  # (B,H,W)
    flat = ly.reshape(b, -1)
    n = flat.shape[1]
    centres = np.linspace(0.0, 1.0, LOG_BINS, dtype=np.float32)
    pos = np.clip((flat + 12.0) / 12.0, 0.0, 1.0)
    w = np.clip(1.0 - np.abs(pos[:, :, None] - centres[None, None, :]) * (LOG_BINS - 1), 0.0, None)
    hist = w.sum(axis=1) / n
    ranked = np.sort(flat, axis=1)
    idx = [min(n - 1, round(q * (n - 1))) for q in PERCENTILES]
    pct = ranked[:, idx] / 4.0
    mx = x.max(axis=3).reshape(b, -1)
    hi = (mx >= 250.0 / 255.0).mean(axis=1, dtype=np.float32)[:, None]
    lo = (mx <= 5.0 / 255.0).mean(axis=1, dtype=np.float32)[:, None]
    grid = _adaptive_mean(ly, 4).reshape(b, 16) / 4.0
    return np.concatenate([hist, pct, hi, lo, grid], axis=1).astype(np.float32)
