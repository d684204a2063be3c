"""Full-reference image metrics, computed one exact, documented way (see docs/evaluation.md).

Protocol, in this order, for both the output and the target:

1. **Quantise to 8 bits**: float [0,1] -> ``floor(clip(x, 0, 1) * 255 + 0.5)`` (round half up, as
   :func:`deepexposure.image.io.from_float`); uint16 -> ``floor(x * 255 / 65535 + 0.5)``; uint8 unchanged.
2. **Resize** (default ``long_edge=500``, as in the paper's evaluation) with ``cv2.resize(..., INTER_AREA)``
   applied to the 8-bit codes as float64 (an exact pixel-area average, not re-rounded: OpenCV's uint8 INTER_AREA
   uses fixed-point weights that are off by one level here and there, so a constant offset of k levels would
   not stay k). New size: ``round_half_up(W * 500 / max(H, W))`` by ``round_half_up(H * 500 / max(H, W))``, each at
   least 1. Photos whose long edge is already <= ``long_edge`` are left as they are (never upscaled).
   ``long_edge=None``: native size.
3. **Metrics** in float64 on the 0-255 scale:

   * ``mse``: the joint mean of squared differences over all pixels and all three channels (not a mean of
     per-channel PSNRs); ``psnr = 10 log10(255^2 / mse)`` (``inf`` when ``mse == 0``).
   * ``ssim`` (``variant="wang"``, default): the MATLAB ``ssim.m`` of Wang et al. (2004 reference code, 2009
     version with automatic downsampling) applied to the BT.601 luma of MATLAB's ``rgb2gray`` on the (resized)
     images as double (``0.298936 R + 0.587043 G + 0.114021 B``, 0-255, not rounded): downsampling by ``f = max(1, round(min(H, W) / 256))`` with an ``f x f`` average filter
     (``imfilter(..., 'symmetric', 'same')``) and keeping every f-th pixel from the first; 11x11 Gaussian window,
     sigma 1.5; K1 = 0.01, K2 = 0.03, L = 255; population (biased) local statistics; the map is kept only where
     the window fits inside the image ('valid') and averaged.
     ``variant="rgb"``: scikit-image ``structural_similarity`` with the same window and constants on each RGB
     channel, averaged over channels, no downsampling (what many Python papers report; larger than "wang").
   * ``de76`` / ``de2000``: mean over pixels of CIE76 / CIEDE2000 colour differences in CIELAB (D65, 2 degree
     observer), via ``skimage.color.rgb2lab`` of the (resized) 8-bit sRGB values / 255.

Set averages (``summarize`` in :mod:`deepexposure.evaluation.report`) average each metric per image; the PSNR of
the mean MSE is reported next to it as ``psnr_of_mean_mse``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.color import deltaE_cie76, deltaE_ciede2000, rgb2lab

__all__ = [
    "DEFAULT_LONG_EDGE",
    "METRICS",
    "SSIM_VARIANTS",
    "to_uint8",
    "prepare",
    "mse",
    "psnr",
    "psnr_from_mse",
    "ssim",
    "delta_e76",
    "delta_e2000",
    "rgb2gray_matlab",
    "compute_metrics",
]

#: Long edge (pixels) the metrics are computed at by default, as in the paper.
DEFAULT_LONG_EDGE = 500
#: Metric names, in report order (higher is better only for psnr and ssim).
METRICS = ("mse", "psnr", "ssim", "de76", "de2000")
SSIM_VARIANTS = ("wang", "rgb")

#: MATLAB rgb2gray coefficients (first row of the inverse of the NTSC YIQ matrix; BT.601 luma weights).
_RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
_K1, _K2, _L = 0.01, 0.03, 255.0


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H,W,3) float [0,1] (clipped, NaN -> 0), uint8 or uint16 -> uint8 (H,W,3), rounding half up. Copies."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.copy()
    if a.dtype == np.uint16:
        return np.floor(a.astype(np.float64) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        x = np.clip(np.nan_to_num(a.astype(np.float64), nan=0.0), 0.0, 1.0)
        return np.floor(x * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {a.dtype}: use float in [0, 1], uint8 or uint16")


def _metric_size(h: int, w: int, long_edge: int | None) -> tuple[int, int]:
    """(height, width) the metrics are computed at."""
    if long_edge is None or max(h, w) <= long_edge:
        return h, w
    s = long_edge / max(h, w)
    return max(1, _round_half_up(h * s)), max(1, _round_half_up(w * s))


def prepare(image: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE) -> np.ndarray:
    """Steps 1-2 of the protocol: quantise to 8-bit codes, then INTER_AREA resize (in float64) to ``long_edge``.

    Returns float64 (h, w, 3) on the 0-255 scale (integers when no resize was needed).
    """
    u8 = to_uint8(image).astype(np.float64)
    h, w = _metric_size(u8.shape[0], u8.shape[1], long_edge)
    if (h, w) == u8.shape[:2]:
        return u8
    return cv2.resize(u8, (w, h), interpolation=cv2.INTER_AREA)


def _pair(a: np.ndarray, b: np.ndarray, long_edge: int | None) -> tuple[np.ndarray, np.ndarray]:
    a8, b8 = to_uint8(a), to_uint8(b)
    if a8.shape != b8.shape:
        raise ValueError(f"images differ in size: {a8.shape[1]}x{a8.shape[0]} vs {b8.shape[1]}x{b8.shape[0]}")
    return prepare(a8, long_edge=long_edge), prepare(b8, long_edge=long_edge)


def psnr_from_mse(m: float) -> float:
    """PSNR (dB, peak 255) from an MSE on the 0-255 scale; ``inf`` for 0."""
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def _mse8(a8: np.ndarray, b8: np.ndarray) -> float:
    d = a8 - b8
    return float(np.mean(d * d))


def mse(a: np.ndarray, b: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE) -> float:
    """Joint MSE over all pixels and channels on the 0-255 scale (after the protocol's quantise + resize)."""
    return _mse8(*_pair(a, b, long_edge))


def psnr(a: np.ndarray, b: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE) -> float:
    """PSNR in dB, peak 255, from the joint MSE (:func:`mse`); ``inf`` for identical images."""
    return psnr_from_mse(mse(a, b, long_edge=long_edge))


def rgb2gray_matlab(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a double (H,W,3) 0-255 image (BT.601 luma weights, no rounding) -> float64 (H,W)."""
    return np.asarray(rgb, dtype=np.float64) @ _RGB2GRAY


def _gaussian_window() -> np.ndarray:
    """MATLAB ``fspecial('gaussian', 11, 1.5)`` as a separable 1-D kernel (11,) float64 summing to 1."""
    x = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(x * x) / (2 * 1.5**2))
    return g / g.sum()


def _wang_downsample(img: np.ndarray) -> np.ndarray:
    """Wang's automatic downsampling: f x f mean filter (MATLAB 'symmetric', 'same' anchor), keep every f-th pixel."""
    f = max(1, _round_half_up(min(img.shape[:2]) / 256))
    if f == 1:
        return img
    # MATLAB imfilter puts the kernel centre at floor((f+1)/2) (1-based), i.e. anchor (f-1)//2 (0-based);
    # 'symmetric' padding repeats the edge pixel (OpenCV BORDER_REFLECT).
    k = np.full((f, f), 1.0 / (f * f))
    anchor = ((f - 1) // 2, (f - 1) // 2)
    blurred = cv2.filter2D(img, cv2.CV_64F, k, anchor=anchor, borderType=cv2.BORDER_REFLECT)
    return blurred[::f, ::f]


def _ssim_wang_gray(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of two float64 (H,W) images on the 0-255 scale, as Wang's ssim.m (downsampling included)."""
    x, y = _wang_downsample(x), _wang_downsample(y)
    if min(x.shape) < 11:
        raise ValueError(f"image too small for SSIM's 11x11 window after downsampling ({x.shape[1]}x{x.shape[0]})")
    g = _gaussian_window()

    def filt(z: np.ndarray) -> np.ndarray:  # filter2(window, z, 'valid')
        return cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu1, mu2 = filt(x), filt(y)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = filt(x * x) - mu1_sq
    s2 = filt(y * y) - mu2_sq
    s12 = filt(x * y) - mu12
    c1, c2 = (_K1 * _L) ** 2, (_K2 * _L) ** 2
    m = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(m.mean())


def _ssim8(a8: np.ndarray, b8: np.ndarray, variant: str) -> float:
    if variant == "wang":
        return _ssim_wang_gray(rgb2gray_matlab(a8), rgb2gray_matlab(b8))
    if variant == "rgb":
        from skimage.metrics import structural_similarity

        return float(structural_similarity(a8, b8, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=255))
    raise ValueError(f"unknown SSIM variant {variant!r}; choose from {', '.join(SSIM_VARIANTS)}")


def ssim(a: np.ndarray, b: np.ndarray, *, variant: str = "wang", long_edge: int | None = DEFAULT_LONG_EDGE) -> float:
    """Mean SSIM in [-1, 1] (1 = identical) after the protocol's quantise + resize; ``variant`` "wang" or "rgb"."""
    return _ssim8(*_pair(a, b, long_edge), variant)


def _lab(x255: np.ndarray) -> np.ndarray:
    return rgb2lab(x255 / 255.0, illuminant="D65", observer="2")


def delta_e76(a: np.ndarray, b: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE) -> float:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB, D65), after quantise + resize."""
    a8, b8 = _pair(a, b, long_edge)
    return float(np.mean(deltaE_cie76(_lab(a8), _lab(b8))))


def delta_e2000(a: np.ndarray, b: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE) -> float:
    """Mean CIEDE2000 colour difference in CIELAB (D65), after quantise + resize."""
    a8, b8 = _pair(a, b, long_edge)
    return float(np.mean(deltaE_ciede2000(_lab(a8), _lab(b8))))


def compute_metrics(output: np.ndarray, target: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE,
                    ssim_variant: str = "wang") -> dict[str, float]:
    """All of :data:`METRICS` for one image pair, sharing one quantise + resize. ``output`` is compared to ``target``."""
    a8, b8 = _pair(output, target, long_edge)
    m = _mse8(a8, b8)
    la, lb = _lab(a8), _lab(b8)
    return {
        "mse": m,
        "psnr": psnr_from_mse(m),
        "ssim": _ssim8(a8, b8, ssim_variant),
        "de76": float(np.mean(deltaE_cie76(la, lb))),
        "de2000": float(np.mean(deltaE_ciede2000(la, lb))),
    }
