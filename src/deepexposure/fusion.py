"""Mertens exposure fusion, streamed over exposures, for 8-bit, 16-bit and float photos.

The paper's test-time renderer: the photo exposed by each EV and the original are merged by Mertens et al.'s
exposure fusion. Weights are computed on the gamma-encoded (sRGB) values, as in Mertens and OpenCV:

* contrast: |Laplacian| (3x3, 4-neighbour) of the grey image (``cv2.COLOR_RGB2GRAY`` weights);
* saturation: sqrt(sum over channels of (c - mean)^2) (OpenCV's definition, i.e. std * sqrt(3));
* well-exposedness: prod over channels of exp(-(c - 0.5)^2 / (2 sigma^2)), sigma = 0.2;

``w = contrast^wc * saturation^ws * exposedness^we + 1e-12``, normalised over exposures; the result is the
collapsed sum over exposures of Gaussian pyramid(w) x Laplacian pyramid(image), with
``int(log2(min(h, w)))`` levels, ``cv2.pyrDown``/``cv2.pyrUp``. This matches ``cv2.createMergeMertens(wc, ws, we)``
(see tests for the measured PSNR) with three differences on purpose: any bit depth is accepted, memory does not
grow with the number of exposures (two passes: weight sum, then one exposure's pyramids at a time, accumulated
in place), and the weight exponents and ``sigma`` are parameters. Written here because OpenCV's implementation
keeps every pyramid of every exposure in memory and assumes 8-bit input.

``fast=True`` fuses a reduced copy (long edge ``fast_long_edge``) and transfers the result to full resolution
through a per-channel gain map (fused / original at low resolution) upsampled by a guided filter guided by the
full-resolution photo; measured above 38 dB PSNR against the exact fusion on real photos (benchmarks/fusion.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from deepexposure.color import apply_ev

__all__ = ["mertens_fuse", "fuse_exposures", "exposure_weights", "laplacian_pyramid", "collapse_pyramid",
           "n_levels"]

Images = Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]]


def _as_float(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1 / 255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) * np.float32(1 / 65535)
    return a.astype(np.float32, copy=False)


def n_levels(shape: tuple[int, ...]) -> int:
    """OpenCV's pyramid depth for an image of ``shape`` (h, w, ...): int(log2(min(h, w)))."""
    return int(np.log(float(min(shape[0], shape[1]))) / np.log(2.0))


def exposure_weights(img: np.ndarray, *, contrast: float = 1.0, saturation: float = 1.0,
                     exposedness: float = 1.0, sigma: float = 0.2) -> np.ndarray:
    """Mertens weight (H, W) float32 of one float32 sRGB [0,1] (H, W, 3) exposure (not normalised)."""
    w = np.ones(img.shape[:2], np.float32)
    if contrast:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        c = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
        w *= c if contrast == 1 else np.power(c, np.float32(contrast))
    if saturation or exposedness:
        mean = img.mean(axis=2, keepdims=True, dtype=np.float32)
    if saturation:
        s = np.sqrt(np.square(img - mean).sum(axis=2, dtype=np.float32))
        w *= s if saturation == 1 else np.power(s, np.float32(saturation))
    if exposedness:
        # prod_c exp(-(c-0.5)^2 / (2 sigma^2)) = exp(-sum_c (c-0.5)^2 / (2 sigma^2)): one exp instead of three
        e = np.square(img - np.float32(0.5)).sum(axis=2, dtype=np.float32)
        e *= np.float32(-exposedness / (2 * sigma * sigma))
        w *= np.exp(e)
    w += np.float32(1e-12)
    return w


def laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid with ``levels`` band levels plus the coarsest Gaussian level (levels + 1 arrays)."""
    gauss = [img]
    for _ in range(levels):
        gauss.append(cv2.pyrDown(gauss[-1]))
    for lvl in range(levels):
        h, w = gauss[lvl].shape[:2]
        gauss[lvl] = gauss[lvl] - cv2.pyrUp(gauss[lvl + 1], dstsize=(w, h))
    return gauss


def collapse_pyramid(pyr: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`laplacian_pyramid` (the input list is not modified)."""
    out = pyr[-1]
    for lvl in range(len(pyr) - 2, -1, -1):
        h, w = pyr[lvl].shape[:2]
        out = pyr[lvl] + cv2.pyrUp(out, dstsize=(w, h))
    return out


def _iterate(images: Images) -> Iterator[np.ndarray]:
    return iter(images() if callable(images) else images)


def mertens_fuse(images: Images, *, contrast: float = 1.0, saturation: float = 1.0, exposedness: float = 1.0,
                 sigma: float = 0.2, levels: int | None = None) -> np.ndarray:
    """Fuse exposures of one scene -> float32 (H, W, 3) sRGB, clipped to [0, 1].

    ``images``: a sequence of (H, W, 3) arrays (float32 [0,1], uint8 or uint16), or a zero-argument callable
    returning a fresh iterator over them — then each exposure is generated twice (weight sum, then blending) and
    only one is held at a time, so memory does not depend on the number of exposures.
    ``contrast``/``saturation``/``exposedness``: weight exponents (0 switches a term off). ``sigma``: width of the
    well-exposedness Gaussian. ``levels``: pyramid depth (default OpenCV's int(log2(min(h, w)))).
    """
    kw = dict(contrast=contrast, saturation=saturation, exposedness=exposedness, sigma=sigma)
    weight_sum = None
    count = 0
    for img in _iterate(images):
        w = exposure_weights(_as_float(img), **kw)
        weight_sum = w if weight_sum is None else cv2.add(weight_sum, w, dst=weight_sum)
        count += 1
    if weight_sum is None:
        raise ValueError("no images to fuse")
    inv_sum = cv2.divide(1.0, weight_sum)
    del weight_sum
    levels = n_levels(inv_sum.shape) if levels is None else levels
    result: list[np.ndarray] | None = None
    seen = 0
    for img in _iterate(images):
        f = _as_float(img)
        w = exposure_weights(f, **kw)
        w *= inv_sum
        wpyr = [w]
        for _ in range(levels):
            wpyr.append(cv2.pyrDown(wpyr[-1]))
        lap = laplacian_pyramid(f, levels)
        del f
        for lvl in range(levels + 1):
            band = lap[lvl]
            band *= wpyr[lvl][..., None]
            if result is None or len(result) <= lvl:
                result = (result or []) + [band]
            else:
                result[lvl] += band
        del lap, wpyr, w
        seen += 1
    if seen != count:
        raise ValueError("the image source gave a different number of images on its second pass; pass a list "
                         "or a callable that returns a fresh iterator")
    out = collapse_pyramid(result)
    return np.clip(out, 0.0, 1.0, out=out)


def _ev_lut(bit_depth: int, ev: float) -> np.ndarray:
    peak = 255 if bit_depth == 8 else 65535
    x = np.arange(peak + 1, dtype=np.float32) / peak
    return apply_ev(x, ev).astype(np.float32)


def _exposure_factory(srgb: np.ndarray, evs: Sequence[float]) -> Callable[[], Iterator[np.ndarray]]:
    """Lazily generate [original, apply_ev(srgb, ev) for ev in evs] as float32; by LUT when the input is quantised."""
    a = np.asarray(srgb)
    if a.dtype in (np.uint8, np.uint16):
        quant = a
    else:
        # float photos decoded from 8-bit files are exactly k/255: index an 8-bit LUT; anything else goes
        # through a 16-bit LUT (quantisation error <= 0.5/65535, far below what float32 fusion resolves)
        q8 = np.rint(a * np.float32(255))
        if np.abs(q8 - a * np.float32(255)).max(initial=0) < 1e-3:
            quant = q8.astype(np.uint8)
        else:
            quant = np.rint(np.clip(a, 0, 1) * np.float32(65535)).astype(np.uint16)
    depth = 8 if quant.dtype == np.uint8 else 16
    src = _as_float(a)

    def gen() -> Iterator[np.ndarray]:
        yield src
        for ev in evs:
            yield _ev_lut(depth, float(ev))[quant]

    return gen


def fuse_exposures(srgb: np.ndarray, evs: Sequence[float], *, fast: bool = False, fast_long_edge: int = 1024,
                   **fusion_kw) -> np.ndarray:
    """The fusion renderer: fuse the original with ``apply_ev(srgb, ev)`` for each ev (EV stops).

    ``srgb``: (H, W, 3) float32 [0,1] (or uint8/uint16). Exposures are generated lazily, never all at once.
    ``fast``: fuse a copy with long edge ``fast_long_edge`` and transfer it by a guided gain map (see module doc).
    Returns float32 sRGB [0, 1].
    """
    src = _as_float(srgb)
    if not len(evs):
        return src.copy()
    H, W = src.shape[:2]
    if fast and max(H, W) > fast_long_edge * 1.25:
        from deepexposure.segmentation import guided_filter  # image module, no torch

        f = fast_long_edge / max(H, W)
        small = cv2.resize(src, (max(1, round(W * f)), max(1, round(H * f))), interpolation=cv2.INTER_AREA)
        fused = mertens_fuse(_exposure_factory(small, evs), **fusion_kw)
        eps = np.float32(1 / 64)
        gain = (fused + eps) / (small + eps)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        gain = guided_filter(grey, gain, radius=4, eps=1e-4)
        gain = cv2.resize(gain, (W, H), interpolation=cv2.INTER_LINEAR)
        out = (src + eps) * gain - eps
        return np.clip(out, 0.0, 1.0, out=out)
    return mertens_fuse(_exposure_factory(src, evs), **fusion_kw)
