"""Mertens exposure fusion in cache-sized tiles, streamed over exposures, for 8-bit, 16-bit and float photos.

The paper's test-time renderer: the photo exposed by each EV (:func:`deepexposure.image.color.apply_ev`) and the
original are merged by Mertens et al.'s exposure fusion. Weights are computed on the gamma-encoded (sRGB)
values, exactly as OpenCV's ``MergeMertensImpl`` (photo/src/merge.cpp) does:

* contrast: |Laplacian| of the grey image (``cv2.COLOR_RGB2GRAY``: 0.299 R + 0.587 G + 0.114 B; ``cv2.Laplacian``
  with ksize 1, i.e. the 4-neighbour kernel [0 1 0; 1 -4 1; 0 1 0], border reflect-101);
* saturation: sqrt(sum over channels of (c - mean)^2), OpenCV's definition (= population std * sqrt(3); the
  constant factor cancels in the normalisation), with OpenCV's float32 rounding of the mean reproduced (it
  decides the weights of grey pixels);
* well-exposedness: prod over channels of exp(-(c - 0.5)^2 / (2 sigma^2)), sigma = 0.2 (OpenCV: /0.08);

``w = contrast^wc * saturation^ws * exposedness^we + 1e-12`` (an exponent of 0 switches its term off, also
where the term is 0, as ``cv::pow``), divided by the sum over exposures; the result is the collapsed sum over
exposures of Gaussian pyramid(w) x Laplacian pyramid(image) with ``int(log2(min(h, w)))`` levels built by
``cv2.pyrDown``/``cv2.pyrUp`` (border reflect-101). Output is clipped to [0, 1] (OpenCV returns the unclipped
float blend, whose overshoots of the pyramid blend are a few 1/1000 at strong edges).

Differences from ``cv2.createMergeMertens(wc, ws, we).process`` (why this is hand-written), all on purpose:

* OpenCV divides every input by 255 (uint16 or float input comes out wrong) and its no-argument constructor
  switches the well-exposedness term off (defaults 1, 1, 0); here any bit depth is accepted and (1, 1, 1) is
  the default; ``sigma`` is a parameter.
* OpenCV keeps every exposure as float plus all its pyramids in memory (about 1.9 GB for six 12 MP exposures).
  Here no full-resolution copy of an exposure, of its weight or of its Laplacian band is ever made. Two engines
  compute the same values (tested against a whole-image reference, 147-158 dB):

  - resident (a list of arrays; :func:`fuse_exposures`, whose exposures are lookup tables of one photo): level 0
    (3/4 of all pixels) is blended tile by tile (128 rows x about 1,536 columns, every exposure at once), so each
    weight is computed once, the output tile stays in the CPU's cache and each exposure is read once per tile:
    out = (sum_k w_k band_k) / sum_k w_k there. The same pass blends level 1 of the tile's level-1 rows from
    the level-1 image the level-0 band computes anyway (read with a wider halo; so no level-1 image is stored
    or made twice). Each exposure's normalised weight at level 1 and its level-2 image are kept (a quarter-size
    float32 map and a sixteenth-size RGB one, i.e. memory grows by 1.75 bytes per pixel per exposure); levels
    >= 2 are then blended exposure by exposure.
  - streaming (a zero-argument callable yielding the exposures): pass 1 sums the weights (one H x W map),
    pass 2 blends one exposure at a time on the same tiles; memory does not grow with the number of exposures.

  Peak memory: the output, the result pyramid's coarser levels (a third of an image), every exposure's level-2
  image (a sixteenth each) and one exposure's coarser Gaussian levels, the quarter-size weight maps and per-thread
  tile buffers (333 MB above the input for six 12 MP exposures, with the 8-bit input itself as the codes).
* :func:`fuse_exposures` never materialises an exposed copy either: for 8/16-bit photos (and float photos, which
  are quantised to 16-bit codes first; exactly k/255 floats, as :func:`deepexposure.image.io.read_photo` returns for
  8-bit files, are recognised as 8-bit) each exposure is a lookup table of ``apply_ev`` over all codes (256 /
  65,536 entries), read tile by tile.

Tiles and float rounding: OpenCV's vector loops leave a scalar remainder at the end of each buffer, and
``cvtColor`` and ``magnitude`` round it differently (by one unit in the last place). That is harmless for the
blend but not for the weights of grey or flat pixels, which that rounding decides (saturation or Laplacian ~1e-8
instead of 0): so weights are computed on contiguous rows of a tile whose width is a multiple of 64 pixels,
ending one unused row below what the tile needs (:func:`_tile_weights`), which puts every remainder where the
whole image has it or where no kept value depends on it (without this, tiles cost up to 60 dB of agreement).

Measured (tests/test_fusion.py, benchmarks/fusion.py): 66-78 dB PSNR against OpenCV on the same 8-bit
exposures (140 dB with the contrast term alone; the rest is float32 rounding of weights at grey pixels). On a
12 MP photo with 6 exposures, 2 cores shared with other jobs: 1.69 s (1.96 s of CPU) vs OpenCV's 7.09 s (4.2x
faster, median of 3 interleaved rounds), 253 MB vs 1879 MB above the inputs (0.13; 333 MB, 0.19, since the
tiles grew and levels 0 and 1 share a pass, benchmarks/fusion.py of 2026-12-04). Tiles run on
``cv2.getNumThreads()`` threads (max 8), OpenCV's own threads being switched off meanwhile (``_opencv_serial``);
the last float32 bit of a few outputs may still differ from run to run.

``fuse_exposures(..., fast=True)`` is an approximation: the photo is reduced to ``fast_long_edge``, fused
exactly, and the result is transferred to full resolution by a guided filter (He et al.), i.e. a per-channel
local affine map fused ~= a * original + b fitted at low resolution and applied to the full-resolution original
(guided upsampling). 12x faster than OpenCV, 3x faster than exact, but only 29-38 dB from the exact fusion on
12 MP photos (30.6 dB in the benchmark), below the 38 dB asked of it, for two reasons measured on that photo:
Mertens fusion is not scale invariant (the contrast weights and the pyramid depth depend on the size: the fusion
at long edge 1024 is 31.3 dB from the downsampled exact fusion, at 2000 35.7 dB), and even given the exact result
downsampled as its target the guided transfer reaches only 36.5 dB from 1024 (39.6 dB from 2000). Reaching 38 dB
needs full-resolution weights (the larger part of the exact cost) and a transfer from about half size, i.e. no
longer a fast mode; it stays a preview, not a substitute for the exact renderer.

Why one module over 600 lines: the OpenCV-matching reference (:func:`mertens_fuse`), the tiled exact kernels and
the guided fast mode share their pyramid, weight and rounding helpers; split apart, each would import the others'
privates.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import cv2
import numpy as np

from deepexposure.errors import PhotoError
from deepexposure.image.color import apply_ev
from deepexposure.image.photo import eight_bit_codes

__all__ = ["mertens_fuse", "fuse_exposures", "fuse_table_exposures"]

#: A sequence of (H, W, 3) images, or a zero-argument callable returning a fresh iterator over them.
Images = Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]]

_CODE_ROWS = 128  # rows per block when a float photo is checked for 8-bit codes
_STRIP = 128  # rows per strip (a multiple of 4: level-1 tiles of levels 0 and 1 fused start at even rows)
#: Columns per tile at level 0 (about; even). With _STRIP, a thread's tile buffers are about 16 MB (in the shared
#: cache, not the core's own): fewer, larger tiles cost less in Python calls and GIL hand-offs between the
#: threads than they lose there (12 MP, 64 x 768 -> 128 x 1536: fusion CPU -9 to -14 %, `render` -13 % and
#: `enhance --look expert` -9 % end to end, 12 and 8 interleaved fresh runs; peak +37 MB).
_TILE_W = 1536
_HALO = 8  # spare rows in the default buffer size (halo rows of pyrDown/pyrUp/Laplacian)
_ID8 = np.arange(256, dtype=np.float32) / np.float32(255)
_ID16 = np.arange(65536, dtype=np.float32) / np.float32(65535)
_F32 = np.float32


# ----------------------------------------------------------------------------------------------- workspace
class _Work:
    """Named tile/strip buffers of one worker thread, reused for every tile and level (grown when a larger one is
    asked for): a fresh multi-MB array costs more in page faults than the arithmetic done on it."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, width: int, channels: int = 1) -> np.ndarray:
        """A (rows, width[, channels]) float32 view of buffer ``name`` (valid until ``name`` is asked for again)."""
        n = rows * width * channels
        buf = self.bufs.get(name)
        if buf is None or buf.size < n:
            buf = self.bufs[name] = None  # type: ignore[assignment]  # the old one is freed before the new one is made
            buf = self.bufs[name] = np.empty(max(n, 3 * (_STRIP + _HALO) * min(self.width, _TILE_W + 64)), _F32)
        return buf[:n].reshape((rows, width, channels) if channels > 1 else (rows, width))

    def weights(self, k: int, rows: int, width: int) -> np.ndarray:
        """(k, rows, width) buffer for the weights of k exposures."""
        return self.get("wk", k * rows, width).reshape(k, rows, width)


class _Pool:
    """Runs ``fn(work, item)`` over items on up to ``threads`` threads, each with its own :class:`_Work`
    (OpenCV and numpy release the GIL; strips of one level write disjoint rows)."""

    def __init__(self, width: int, threads: int) -> None:
        self.threads = max(1, threads)
        self.works: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        for _ in range(self.threads):
            self.works.put(_Work(width))
        self.ex = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def map(self, fn: Callable[[_Work, tuple[int, int]], None], items: Iterable[tuple[int, int]]) -> None:
        def task(item: tuple[int, int]) -> None:
            work = self.works.get()
            try:
                fn(work, item)
            finally:
                self.works.put(work)

        if self.ex is None:
            for it in items:
                task(it)
        else:
            for _ in self.ex.map(task, items):  # re-raises the first error
                pass

    def close(self) -> None:
        if self.ex is not None:
            self.ex.shutdown()


#: Below this many pixels the fusion runs on one thread: its strips are too small for threads to pay (a 128 px copy
#: fused 26% faster on one thread than on two; fit-look fuses thousands of them).
_THREADED_MIN_PIXELS = 1 << 18


def _n_threads(pixels: int | None = None) -> int:
    if pixels is not None and pixels < _THREADED_MIN_PIXELS:
        return 1
    return max(1, min(_opencv_threads(), os.cpu_count() or 1, 8))


_cv_lock = threading.Lock()
_cv_state = {"users": 0, "saved": 0}  # fusions running with OpenCV's threads off, and its setting before them


def _opencv_threads() -> int:
    """OpenCV's thread count as set outside the fusions (``cv2.getNumThreads()``, or what it was before the
    running fusions switched it off)."""
    with _cv_lock:
        return _cv_state["saved"] if _cv_state["users"] else cv2.getNumThreads()


@contextlib.contextmanager
def _opencv_serial(active: bool) -> Iterator[None]:
    """OpenCV's own threads off (``cv2.setNumThreads(1)``) while a fusion's pool runs: the pool already keeps
    every core busy, and each OpenCV call on a tile then also woke OpenCV's threads, which yield and wait in the
    kernel (12 MP fusion: CPU -10 to -14 %, wall -4 to -8 %, the same values). Counted, so overlapping fusions in
    several threads restore the setting once, when the last one ends."""
    if not active:
        yield
        return
    with _cv_lock:
        if _cv_state["users"] == 0:
            _cv_state["saved"] = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _cv_state["users"] += 1
    try:
        yield
    finally:
        with _cv_lock:
            _cv_state["users"] -= 1
            if _cv_state["users"] == 0:
                cv2.setNumThreads(_cv_state["saved"])


# ----------------------------------------------------------------------------------------------- sources
class _Source:
    """One exposure, read by row (and column) ranges as float32 sRGB [0,1] (r1-r0, c1-c0, 3) into a given buffer."""

    shape: tuple[int, int]

    def rows(self, r0: int, r1: int, out: np.ndarray, c0: int = 0,
             c1: int | None = None) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class _LutSource(_Source):
    """``table[codes]``: uint8 codes via ``cv2.LUT`` (256 entries), uint16 codes via ``np.take`` (65,536)."""

    def __init__(self, codes: np.ndarray, table: np.ndarray) -> None:
        self.codes = codes
        self.table = table
        self.shape = codes.shape[:2]

    def rows(self, r0: int, r1: int, out: np.ndarray, c0: int = 0, c1: int | None = None) -> np.ndarray:
        c = self.codes[r0:r1, c0:c1]
        if c.dtype == np.uint8:
            return cv2.LUT(c, self.table, dst=out)
        return np.take(self.table, c, out=out)


class _FloatSource(_Source):
    """A float image, clipped to [0, 1] (float64 is rounded to float32)."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.shape = img.shape[:2]

    def rows(self, r0: int, r1: int, out: np.ndarray, c0: int = 0, c1: int | None = None) -> np.ndarray:
        return np.clip(self.img[r0:r1, c0:c1], 0.0, 1.0, out=out, casting="unsafe")


def _check_image(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise PhotoError(f"fusion needs (H, W, 3) RGB images, got shape {a.shape}")
    if a.dtype not in (np.uint8, np.uint16) and a.dtype.kind != "f":
        raise PhotoError(f"fusion needs uint8, uint16 or float images, got {a.dtype}")
    return np.ascontiguousarray(a)


def _source(img: np.ndarray) -> _Source:
    a = _check_image(img)
    if a.dtype == np.uint8:
        return _LutSource(a, _ID8)
    if a.dtype == np.uint16:
        return _LutSource(a, _ID16)
    return _FloatSource(a)


# ----------------------------------------------------------------------------------------------- weights
#: Saturations below this are set to exactly 0 by fuse_exposures (grey pixels); see _weights. Real saturations of
#: 8-bit codes are >= 3.1e-3, of 16-bit codes >= 1.2e-5.
_GREY_SAT = 1e-6


def _weights(x: np.ndarray, params: tuple[float, float, float, float, bool], work: _Work | None = None) -> np.ndarray:
    """Mertens weight (n, W) float32 of float32 sRGB [0,1] rows ``x`` (n, W, 3), not normalised (+1e-12).

    Rows 0 and n-1 see a reflect-101 border in the Laplacian: callers pass one halo row each side and drop them.
    With ``work``, the result is a view into its buffers (valid until the next call).
    """
    wc, ws, we, sigma, grey_zero = params
    n, width = x.shape[:2]
    work = work if work is not None else _Work(width)

    def buf(name: str) -> np.ndarray | None:
        return work.get(name, n, width) if work is not None else None

    contrast = None
    if wc != 0:
        grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY, dst=buf("grey"))
        contrast = cv2.Laplacian(grey, cv2.CV_32F, dst=buf("lap"))  # ksize=1: [0 1 0; 1 -4 1; 0 1 0], reflect-101
        if wc != 1:
            contrast = cv2.pow(np.abs(contrast, out=contrast), float(wc), dst=contrast)
        # wc == 1: the sign is dropped at the end (the other factors are >= 0)
    sat = wexp = None
    if ws != 0 or we != 0:
        # OpenCV's arithmetic, rounding included: mean = (r + g + b) * float32(1/3), deviations c - mean. For grey
        # pixels that rounding leaves saturations of ~1e-8 instead of 0 which, being far above the 1e-12 floor,
        # decide the weights there; reproducing it is worth ~25 dB of agreement with OpenCV.
        r, g, b = cv2.split(x, [buf("r"), buf("g"), buf("b")] if work is not None else None)
        m = np.add(r, g, out=buf("m"))
        m += b
        m *= _F32(1 / 3)
        np.subtract(r, m, out=r)
        np.subtract(g, m, out=g)
        np.subtract(b, m, out=b)
        sat = cv2.magnitude(cv2.magnitude(r, g, g), b, b)  # sqrt(sum_c (c - mean)^2)
        if grey_zero:
            # ...except in the renderer (fuse_exposures), which makes it exactly 0 below _GREY_SAT (real saturations of 8/16-bit codes are >= 1e-5):
            # left in, rounding noise of 1e-8 picks the winning exposure on grey pixels and the output jumps by
            # tens of codes when an EV changes by 1e-6 (13 % of a greyscale photo's pixels moved by > 2 codes)
            sat[sat < _F32(_GREY_SAT)] = 0
        if we != 0:
            # prod_c exp(-(c-.5)^2/(2 s^2))^we = exp(-we * q / (2 s^2)), q = sum_c (c-.5)^2 = sat^2 + 3 (mean-.5)^2
            t = cv2.addWeighted(m, 3 ** 0.5, m, 0.0, -0.5 * 3 ** 0.5, dst=m)  # sqrt(3) (mean - .5)
            q = cv2.magnitude(sat, t, r)
            wexp = cv2.exp(cv2.multiply(q, q, dst=q, scale=-we / (2.0 * sigma * sigma)), dst=q)
        if ws == 0:
            sat = None
        elif ws != 1:
            sat = cv2.pow(sat, float(ws), dst=sat)
    out = None
    for f in (contrast, sat, wexp):
        if f is not None:
            out = f if out is None else cv2.multiply(out, f, dst=out)
    if out is None:
        out = np.ones((n, width), _F32)
    elif contrast is not None and wc == 1:
        np.abs(out, out=out)
    out += _F32(1e-12)
    return out


# ----------------------------------------------------------------------------------------------- pyramids
def _n_levels(h: int, w: int) -> int:
    """OpenCV's pyramid depth: int(logf(min(h, w)) / logf(2)) in float32, i.e. floor(log2(min(h, w)))."""
    return int(_F32(np.log(_F32(min(h, w)))) / _F32(np.log(_F32(2.0))))


def _level_sizes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    sizes = [(h, w)]
    for _ in range(levels):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def _strips(h: int, step: int | None = None) -> list[tuple[int, int]]:
    step = step or _STRIP
    return [(r0, min(h, r0 + step)) for r0 in range(0, h, step)]


def _halo(r0: int, r1: int, n: int) -> tuple[int, int, int, int]:
    """For output rows [r0, r1) (r0 even) of a Laplacian band of an n-row image: the rows [ga, gb) of its
    pyrDown that the pyrUp reads, and the rows [xa, xb) of the image those need (the same for columns)."""
    ga, gb = max(r0 // 2 - 1, 0), min((r1 - 1) // 2 + 2, (n + 1) // 2)
    return ga, gb, max(2 * ga - 2, 0), min(2 * gb + 2, n)


def _pyrup_rows(src: np.ndarray, r0: int, r1: int, dst_h: int, dst_w: int, work: _Work | None = None) -> np.ndarray:
    """Rows [r0, r1) (r0 even) of ``cv2.pyrUp(src, dstsize=(dst_w, dst_h))``, computed from a strip of ``src``
    (one source row of halo each side; the rows next to a cut see a wrong border and are dropped)."""
    ga = max(r0 // 2 - 1, 0)
    return _pyrup_tile(src[ga:(r1 - 1) // 2 + 2], ga, 0, r0, r1, 0, dst_w, dst_h, dst_w, work)


def _pyrup_tile(g: np.ndarray, ga: int, gc: int, r0: int, r1: int, c0: int, c1: int, dst_h: int, dst_w: int,
                work: _Work | None = None) -> np.ndarray:
    """Rows [r0, r1) x columns [c0, c1) (r0, c0 even) of ``cv2.pyrUp(src, dstsize=(dst_w, dst_h))`` from the
    tile ``g`` of ``src`` starting at row ``ga`` and column ``gc`` and reaching the rows and columns
    :func:`_halo` gives; computed in ``work``'s buffer "up" when given."""
    gb, gd = ga + g.shape[0], gc + g.shape[1]
    dh = dst_h - 2 * ga if gb == (dst_h + 1) // 2 else 2 * (gb - ga)  # at the image's edge, keep its parity
    dw = dst_w - 2 * gc if gd == (dst_w + 1) // 2 else 2 * (gd - gc)
    out = None if work is None else work.get("up", dh, dw, g.shape[2] if g.ndim == 3 else 1)
    up = cv2.pyrUp(g, dst=out, dstsize=(dw, dh))
    return up[r0 - 2 * ga:r1 - 2 * ga, c0 - 2 * gc:c1 - 2 * gc]


def _pyrdown_rows(x: np.ndarray, a: int, r0: int, r1: int, dst: np.ndarray | None, work: _Work | None = None,
                  buf: str = "up") -> np.ndarray:
    """Rows [r0/2, ceil(r1/2)) of ``cv2.pyrDown(image)`` from image rows ``x`` = [a, b) with a = max(r0-2, 0) and
    b = min(r1+2, H) (two halo rows each side; r0 even): written into ``dst`` (full-size rows) and returned, or,
    with ``dst`` None, returned as a view into ``work``'s buffer ``buf``."""
    return _pyrdown_tile(x, a, 0, r0, r1, 0, x.shape[1], dst, work, buf)


def _pyrdown_tile(x: np.ndarray, a: int, ac: int, r0: int, r1: int, c0: int, c1: int, dst: np.ndarray | None,
                  work: _Work | None = None, buf: str = "up") -> np.ndarray:
    """Rows [r0/2, ceil(r1/2)) x columns [c0/2, ceil(c1/2)) of ``cv2.pyrDown(image)`` from the image tile ``x``
    starting at row ``a`` = max(r0-2, 0) and column ``ac`` = max(c0-2, 0) and reaching two rows/columns past
    r1/c1 (or the image's edge); r0, c0 even. Written into ``dst`` (full-size) and returned, or, with ``dst``
    None, returned as a view into ``work``'s buffer ``buf``."""
    n, width = x.shape[:2]
    size = ((width + 1) // 2, (n + 1) // 2)
    out = None if work is None else work.get(buf, size[1], size[0], x.shape[2] if x.ndim == 3 else 1)
    down = cv2.pyrDown(x, dst=out, dstsize=size)
    j0, g0, g1 = (r0 - a) // 2, r0 // 2, (r1 + 1) // 2
    i0, h0, h1 = (c0 - ac) // 2, c0 // 2, (c1 + 1) // 2
    part = down[j0:j0 + g1 - g0, i0:i0 + h1 - h0]
    if dst is None:
        return part
    dst[g0:g1, h0:h1] = part
    return dst[g0:g1, h0:h1]


def _laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """Laplacian pyramid of float32 (H, W[, C]): ``levels`` band-pass levels plus the coarsest Gaussian level."""
    gauss = [np.asarray(img, _F32)]
    for _ in range(levels):
        gauss.append(cv2.pyrDown(gauss[-1]))
    bands = []
    for lvl in range(levels):
        h, w = gauss[lvl].shape[:2]
        bands.append(gauss[lvl] - cv2.pyrUp(gauss[lvl + 1], dstsize=(w, h)))
    return bands + [gauss[-1].copy()]


def _collapse_pyramid(pyr: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`_laplacian_pyramid` (the input is not modified)."""
    out = pyr[-1].copy()
    for lvl in range(len(pyr) - 2, -1, -1):
        h, w = pyr[lvl].shape[:2]
        out = pyr[lvl] + cv2.pyrUp(out, dstsize=(w, h))
    return out


# ----------------------------------------------------------------------------------------------- engine
def _fuse_sources(sources: Callable[[], Iterable[_Source]], *, contrast: float, saturation: float,
                  exposedness: float, sigma: float, levels: int | None, threads: int | None = None,
                  grey_zero: bool = False, resident: bool = False,
                  post: Callable[[np.ndarray], object] | None = None) -> np.ndarray:
    """Streamed fusion of the exposures ``sources()`` yields -> float32 (H, W, 3) sRGB [0, 1].

    ``resident``: the sources are random access and alive together anyway (a list of arrays, lookup tables of one
    photo): level 0 is blended tile by tile with all of them (:func:`_fuse_resident`, one weight computation per
    pixel). Otherwise ``sources()`` is called twice and only one exposure is alive at a time
    (:func:`_fuse_streaming`). ``post`` (resident only): applied in place to each finished block of output rows,
    clipped to [0, 1], on the fusion's threads (a per-pixel step after the fusion, e.g. a look's tone curve: no
    extra pass over the image).
    """
    if post is not None and not resident:
        raise ValueError("post needs the resident engine")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    params = (float(contrast), float(saturation), float(exposedness), float(sigma), bool(grey_zero))
    if not min(params[:3]) >= 0:
        raise ValueError(f"weight exponents must be >= 0, got {params[:3]}")
    it = iter(sources())
    first = next(it, None)
    if first is None:
        raise PhotoError("no images to fuse")
    H, W = first.shape
    max_levels = _n_levels(H, W)
    nlev = max_levels if levels is None else int(levels)
    if not 0 <= nlev <= max_levels:
        raise ValueError(f"levels must be in 0..{max_levels} for a {W}x{H} image, got {levels}")

    def check(src: _Source) -> _Source:
        if src.shape != (H, W):
            raise PhotoError(f"all exposures must have the same size, got {src.shape[::-1]} and {(W, H)} (w, h)")
        return src

    pool = _Pool(W, _n_threads(H * W) if threads is None else threads)
    try:
        with _opencv_serial(pool.threads > 1):
            if resident:
                return _fuse_resident([check(s) for s in _chain(first, it)], H, W, params, nlev, pool, post)
            return _fuse_streaming(sources, _chain(first, it), check, H, W, params, nlev, pool)
    finally:
        pool.close()


class _Geometry(NamedTuple):
    """Row/column ranges of one level-0 tile rows [r0, r1) x columns [c0, c1) (r0, c0 even): ``w*`` the normalised
    weights it needs (two more each side for their pyrDown), ``g*`` the level-1 tile the pyrUp of its band reads,
    ``x*`` the image tile read (everything above, plus one guard row below the weights' Laplacian)."""

    wa: int
    wb: int
    wc: int
    wd: int
    ga: int
    gb: int
    gc: int
    gd: int
    xa: int
    xb: int
    xc: int
    xd: int
    pa: int = 0  # with level 1 (fused): the level-1 rows [pa, pb) x columns [pc, pd) computed from the image tile
    pb: int = 0
    pc: int = 0
    pd: int = 0
    ea: int = 0  # ... and the level-2 rows [ea, eb) x columns [ec, ed) the pyrUp of its level-1 band reads
    eb: int = 0
    ec: int = 0
    ed: int = 0


def _geometry(tile: tuple[int, int, int, int], H: int, W: int, nlev: int, fused: bool = False) -> _Geometry:
    """:class:`_Geometry` of a level-0 tile. ``fused`` (``nlev`` >= 2, r0 and c0 multiples of 4): the image tile
    also covers what level 1's band of the tile's level-1 rows needs (:func:`_level0_tile` with ``level1``), its
    width rounded up to a multiple of 4 where the image allows (so that :func:`_tiles` can make it one of 64)."""
    r0, r1, c0, c1 = tile
    if nlev:
        ga, gb, xa, xb = _halo(r0, r1, H)
        gc, gd, xc, xd = _halo(c0, c1, W)
        pa = pb = pc = pd = ea = eb = ec = ed = 0
        if fused:
            ea, eb, pa, pb = _halo(r0 // 2, (r1 + 1) // 2, (H + 1) // 2)
            ec, ed, pc, pd = _halo(c0 // 2, (c1 + 1) // 2, (W + 1) // 2)
            xa, xb, xc, xd = max(2 * pa - 2, 0), min(2 * pb + 2, H), max(2 * pc - 2, 0), min(2 * pd + 2, W)
            xd = min(xd + (-(xd - xc)) % 4, W)
        return _Geometry(max(r0 - 2, 0), min(r1 + 2, H), max(c0 - 2, 0), min(c1 + 2, W), ga, gb, gc, gd, xa, xb,
                         xc, xd, pa, pb, pc, pd, ea, eb, ec, ed)
    # two columns each side (one would do): even widths, which _tiles can make multiples of 64
    return _Geometry(r0, r1, c0, c1, 0, 0, 0, 0, max(r0 - 1, 0), min(r1 + 2, H), max(c0 - 2, 0), min(c1 + 2, W))


def _tile_weights(work: _Work, x: np.ndarray, geo: _Geometry, params: tuple, H: int) -> np.ndarray:
    """Weights of the tile rows [wa, wb) x columns [wc, wd) from its image tile ``x`` (a view into ``work``).

    Computed on a row slice of the whole tile (contiguous) that ends one row below the last row the Laplacian
    reads: OpenCV's vector loops then leave their scalar remainder (which rounds cvtColor and magnitude
    differently) in that unused row or, at the image's bottom edge, where the whole image has it, so every weight
    is the same whatever the tiling (weights of grey and flat pixels are decided by rounding noise).
    """
    ya, yb = max(geo.wa - 1, 0), min(geo.wb + 2, H)
    w = _weights(x[ya - geo.xa:yb - geo.xa], params, work)
    return w[geo.wa - ya:geo.wb - ya, geo.wc - geo.xc:geo.wd - geo.xc]


def _level0_tile(work: _Work, tile: tuple[int, int, int, int], srcs: Sequence[_Source], params: tuple, H: int,
                 W: int, nlev: int, out: np.ndarray, wdown: Sequence[np.ndarray], *,
                 wsum_all: np.ndarray | None = None, xdown: np.ndarray | None = None,
                 level1: tuple[np.ndarray, Sequence[np.ndarray]] | None = None) -> None:
    """Level 0 of the pyramid blend for the image tile rows [r0, r1) x columns [c0, c1) (r0, c0 even) of the
    exposures ``srcs``.

    Without ``wsum_all``: ``out`` there = (sum_k w_k * band_k) / sum_k w_k, band_k = x_k - pyrUp(pyrDown(x_k))
    (x_k itself when ``nlev`` is 0), each exposure read once. With ``wsum_all`` (H, W) (one exposure at a time):
    ``out`` += (w / wsum_all) * band. When ``nlev`` > 0 also the tile's part of pyrDown(w_k / sum) into
    ``wdown[k]`` and, with ``xdown``, of pyrDown(x_0) into it. Every value equals the whole-image computation:
    the tile is read with the halo its filters need (Laplacian: 1; weight pyrDown: 2; pyrUp of pyrDown: 4 rows
    and columns) and only exact values are kept.

    ``level1`` = (result1, gauss2) (all exposures at once, ``nlev`` >= 2, r0 and c0 multiples of 4): level 1 of
    the tile's level-1 rows [r0/2, ceil(r1/2)) too, from the level-1 image the tile computes anyway (read with a
    wider halo, :func:`_geometry` ``fused``): ``result1`` += wdown_k * (G1_k - pyrUp(G2_k)) there, and the tile's
    part of G2_k = pyrDown(G1_k) into ``gauss2[k]``. So the level-1 image is never stored, nor made again from the
    photo (a second table lookup and pyrDown of every full-resolution pixel).
    """
    r0, r1, c0, c1 = tile
    geo = _geometry(tile, H, W, nlev, fused=level1 is not None)
    wa, wb, wc, wd, ga, gb, gc, gd, xa, xb, xc, xd, pa, pb, pc, pd, ea, eb, ec, ed = geo
    if level1 is not None:
        g0, g1, h0, h1 = r0 // 2, (r1 + 1) // 2, c0 // 2, (c1 + 1) // 2
        n1, m1 = (H + 1) // 2, (W + 1) // 2
        bands1 = work.get("b1", len(srcs) * (g1 - g0), h1 - h0, 3).reshape(len(srcs), g1 - g0, h1 - h0, 3)
    wk = work.weights(len(srcs), wb - wa, wd - wc)
    x = work.get("x", xb - xa, xd - xc, 3)
    o = out[r0:r1, c0:c1]
    inner = (slice(r0 - xa, r1 - xa), slice(c0 - xc, c1 - xc))
    for k, src in enumerate(srcs):
        src.rows(xa, xb, x, xc, xd)
        w = wk[k]
        w[...] = _tile_weights(work, x, geo, params, H)
        if wsum_all is not None:
            w = np.divide(w, wsum_all[wa:wb, wc:wd], out=w)
        band = x[inner]
        if level1 is not None:
            g = _pyrdown_tile(x, xa, xc, 2 * pa, 2 * pb, 2 * pc, 2 * pd, None, work, buf="g1")  # level 1, [pa, pb)
            cv2.subtract(band, _pyrup_tile(g[ga - pa:gb - pa, gc - pc:gd - pc], ga, gc, r0, r1, c0, c1, H, W, work),
                         dst=band)
            g2 = _pyrdown_tile(g, pa, pc, 2 * ea, 2 * eb, 2 * ec, 2 * ed, None, work, buf="g2")  # level 2, [ea, eb)
            level1[1][k][g0 // 2:(g1 + 1) // 2, h0 // 2:(h1 + 1) // 2] = \
                g2[g0 // 2 - ea:(g1 + 1) // 2 - ea, h0 // 2 - ec:(h1 + 1) // 2 - ec]
            cv2.subtract(g[g0 - pa:g1 - pa, h0 - pc:h1 - pc], _pyrup_tile(g2, ea, ec, g0, g1, h0, h1, n1, m1, work),
                         dst=bands1[k])
        elif nlev:
            g = _pyrdown_tile(x, xa, xc, 2 * ga, 2 * gb, 2 * gc, 2 * gd, None, work, buf="g1")  # level-1 tile
            if xdown is not None:
                xdown[r0 // 2:(r1 + 1) // 2, c0 // 2:(c1 + 1) // 2] = \
                    g[r0 // 2 - ga:(r1 + 1) // 2 - ga, c0 // 2 - gc:(c1 + 1) // 2 - gc]
            cv2.subtract(band, _pyrup_tile(g, ga, gc, r0, r1, c0, c1, H, W, work), dst=band)
        w3 = cv2.cvtColor(w[r0 - wa:r1 - wa, c0 - wc:c1 - wc], cv2.COLOR_GRAY2RGB,
                          dst=work.get("w3", r1 - r0, c1 - c0, 3))
        if k or wsum_all is not None:
            cv2.accumulateProduct(band, w3, o)
        else:
            cv2.multiply(band, w3, dst=o)
    if wsum_all is None:
        wsum = work.get("wsum", wb - wa, wd - wc)
        np.copyto(wsum, wk[0])
        for k in range(1, len(srcs)):
            wsum += wk[k]
        inv = cv2.divide(1.0, wsum[r0 - wa:r1 - wa, c0 - wc:c1 - wc], dtype=cv2.CV_32F)
        cv2.multiply(o, cv2.cvtColor(inv, cv2.COLOR_GRAY2RGB, dst=work.get("w3", r1 - r0, c1 - c0, 3)), dst=o)
        if nlev:
            for k in range(len(srcs)):
                wn = _pyrdown_tile(np.divide(wk[k], wsum, out=wk[k]), wa, wc, r0, r1, c0, c1, wdown[k], work)
                if level1 is not None:  # in the order of the exposures, as the level-by-level blend adds them
                    w3 = cv2.cvtColor(wn, cv2.COLOR_GRAY2RGB, dst=work.get("w3", g1 - g0, h1 - h0, 3))
                    cv2.accumulateProduct(bands1[k], w3, level1[0][g0:g1, h0:h1])
    elif nlev:
        _pyrdown_tile(wk[0], wa, wc, r0, r1, c0, c1, wdown[0], work)


def _grid(h: int, w: int, rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """Tiles (r0, r1, c0, c1) of an h x w level: strips of ``rows`` rows (even) cut at even columns about
    ``cols`` apart."""
    n = max(1, round(w / cols))
    step = -(-w // n)
    step += step % 2
    return [(r0, r1, c0, min(w, c0 + step)) for r0, r1 in _strips(h, rows) for c0 in range(0, w, step)]


def _tiles(H: int, W: int, nlev: int, fused: bool = False) -> list[tuple[int, int, int, int]]:
    """Level-0 tiles (r0, r1, c0, c1): strips of :data:`_STRIP` rows cut into tiles of about :data:`_TILE_W`
    columns (even; multiples of 4 when ``fused``, see :func:`_geometry`) whose image tiles (halo included) are a
    multiple of 64 pixels wide, so that OpenCV's vector loops have no remainder there (see :func:`_tile_weights`);
    the last tile takes what is left."""
    step = 4 if fused else 2
    cols, c0 = [], 0
    while c0 < W:
        c1 = W
        if W - c0 > _TILE_W + _TILE_W // 2:
            for c1 in range(c0 + _TILE_W, c0 + _TILE_W - 64 - 2 * step, -step):
                g = _geometry((0, 2, c0, c1), 2, W, nlev, fused)
                if (g.xd - g.xc) % 64 == 0:
                    break
        cols.append((c0, c1))
        c0 = c1
    return [(r0, r1, c0, c1) for r0, r1 in _strips(H) for c0, c1 in cols]


def _last_level1_tile(work: _Work, tile: tuple[int, int, int, int], src: _Source, H: int, W: int,
                      wdown: np.ndarray, result1: np.ndarray) -> None:
    """Level 1 of one exposure when it is the pyramid's last level (a photo under 4 pixels high or wide), for the
    level-1 tile rows [g0, g1) x columns [c0, c1) (g0, c0 even), straight from the image: ``result1`` += wdown *
    G1 there, G1 = pyrDown(image) computed on the tile with the halo it needs."""
    g0, g1, c0, c1 = tile
    xa, xb, xc, xd = max(2 * g0 - 2, 0), min(2 * g1 + 2, H), max(2 * c0 - 2, 0), min(2 * c1 + 2, W)
    x = src.rows(xa, xb, work.get("x", xb - xa, xd - xc, 3), xc, xd)
    band = _pyrdown_tile(x, xa, xc, 2 * g0, 2 * g1, 2 * c0, 2 * c1, None, work, buf="g1")  # level 1, [g0, g1)
    w3 = cv2.cvtColor(wdown[g0:g1, c0:c1], cv2.COLOR_GRAY2RGB, dst=work.get("w3", g1 - g0, c1 - c0, 3))
    cv2.accumulateProduct(band, w3, result1[g0:g1, c0:c1])


def _upper_levels(gauss: list, wdown: np.ndarray, result: list, sizes: list[tuple[int, int]], pool: _Pool,
                  start: int = 1) -> None:
    """Levels >= ``start`` (1 or 2) of one exposure: result[l] += G_l(wn) * (gauss[l] - pyrUp(gauss[l + 1]))
    (the last level: times gauss[l]), from its image at level ``start`` (``gauss[start]``) and normalised
    weight at level 1 ``wdown`` (gauss[start + 1:] are overwritten)."""
    nlev = len(sizes) - 1
    w = wdown
    for lvl in range(2, start + 1):
        w = cv2.pyrDown(w, dstsize=sizes[lvl][::-1])
    for lvl in range(start, nlev + 1):
        h, wd = sizes[lvl]
        if lvl > start:
            w = cv2.pyrDown(w, dstsize=(wd, h))
        if lvl < nlev:
            cv2.pyrDown(gauss[lvl], dst=gauss[lvl + 1], dstsize=sizes[lvl + 1][::-1])

        def stage(work: _Work, s: tuple[int, int], lvl: int = lvl, h: int = h, wd: int = wd,
                  w: np.ndarray = w) -> None:
            r0, r1 = s
            band = gauss[lvl][r0:r1]
            if lvl < nlev:
                up = _pyrup_rows(gauss[lvl + 1], r0, r1, h, wd, work)
                band = cv2.subtract(band, up, dst=work.get("x", r1 - r0, wd, 3))
            w3 = cv2.cvtColor(w[r0:r1], cv2.COLOR_GRAY2RGB, dst=work.get("w3", r1 - r0, wd, 3))
            cv2.accumulateProduct(band, w3, result[lvl][r0:r1])

        pool.map(stage, _strips(h))


def _collapse(result: list, pool: _Pool, post: Callable[[np.ndarray], object] | None = None,
              bad: list | None = None) -> np.ndarray:
    """Collapse the blended Laplacian pyramid in place (the last step, to full resolution, strip by strip);
    ``post`` then runs on each finished strip, clipped (``bad`` gets an entry if a strip is not finite first)."""
    nlev = len(result) - 1
    for lvl in range(nlev, 1, -1):
        h, w = result[lvl - 1].shape[:2]
        result[lvl - 1] += cv2.pyrUp(result[lvl], dstsize=(w, h))
        result[lvl] = None
    out = result[0]
    if nlev:
        H, W = out.shape[:2]

        def collapse0(work: _Work, s: tuple[int, int]) -> None:
            r0, r1 = s
            out[r0:r1] += _pyrup_rows(result[1], r0, r1, H, W, work)
            if post is not None:
                blk = out[r0:r1]
                np.clip(blk, 0.0, 1.0, out=blk)
                if not np.isfinite(blk[:, ::max(1, W // 64)]).all():
                    bad.append(r0)  # type: ignore[union-attr]
                post(blk)

        pool.map(collapse0, _strips(H))
    return out


def _finish(out: np.ndarray) -> np.ndarray:
    np.clip(out, 0.0, 1.0, out=out)
    H, W = out.shape[:2]
    if not np.isfinite(out[::max(1, H // 64), ::max(1, W // 64)]).all():  # NaN input spreads everywhere
        raise PhotoError("fusion produced non-finite values (NaN in the input?)")
    return out


def _fuse_resident(srcs: list[_Source], H: int, W: int, params: tuple, nlev: int, pool: _Pool,
                   post: Callable[[np.ndarray], object] | None = None) -> np.ndarray:
    """Tiled fusion of random-access sources: levels 0 and 1 (15/16 of the pixels) tile by tile with every exposure
    at once (:func:`_level0_tile` with ``level1``), so each weight is computed once, the output tile stays in cache
    and each exposure's level-1 image is made once and never stored; the level-1 weights and level-2 images are
    kept (a quarter- and a sixteenth-size map per exposure) and levels >= 2 are blended exposure by exposure. A
    photo with a single pyramid level (under 4 pixels high or wide) blends it straight from each exposure
    (:func:`_last_level1_tile`)."""
    sizes = _level_sizes(H, W, nlev)
    out = np.empty((H, W, 3), _F32)
    wdown = [np.empty(sizes[1], _F32) for _ in srcs] if nlev else []
    result = [out] + [np.zeros((h, w, 3), _F32) for h, w in sizes[1:]]
    if nlev >= 2:
        gauss2 = [np.empty((*sizes[2], 3), _F32) for _ in srcs]
        pool.map(lambda work, t: _level0_tile(work, t, srcs, params, H, W, nlev, out, wdown,
                                              level1=(result[1], gauss2)), _tiles(H, W, nlev, fused=True))
        gauss = [None, None, None] + [np.empty((h, w, 3), _F32) for h, w in sizes[3:]]
        for k in range(len(srcs)):
            gauss[2] = gauss2[k]
            _upper_levels(gauss, wdown[k], result, sizes, pool, start=2)
            wdown[k] = gauss2[k] = None  # type: ignore[call-overload]
    else:
        pool.map(lambda work, t: _level0_tile(work, t, srcs, params, H, W, nlev, out, wdown), _tiles(H, W, nlev))
        if nlev == 1:
            tiles1 = _grid(*sizes[1], rows=_STRIP, cols=_TILE_W)
            for k, src in enumerate(srcs):
                pool.map(lambda work, t, src=src, k=k: _last_level1_tile(work, t, src, H, W, wdown[k], result[1]),
                         tiles1)
    if nlev:
        bad: list = []
        _collapse(result, pool, post, bad)
        if bad:
            raise PhotoError("fusion produced non-finite values (NaN in the input?)")
        if post is not None:
            return out  # clipped and post-processed strip by strip
    out = _finish(out)
    if post is not None:
        post(out)
    return out


def _fuse_streaming(sources: Callable[[], Iterable[_Source]], first_pass: Iterator[_Source],
                    check: Callable[[_Source], _Source], H: int, W: int, params: tuple, nlev: int,
                    pool: _Pool) -> np.ndarray:
    """Two passes over ``sources()``: pass 1 sums the weights; pass 2 blends each exposure (level 0 strip by strip,
    then levels >= 1). One exposure is alive at a time."""
    tiles = _tiles(H, W, nlev)
    wsum = np.zeros((H, W), _F32)
    count = 0
    for src in first_pass:
        check(src)

        def p1(work: _Work, t: tuple[int, int, int, int], src: _Source = src) -> None:
            r0, r1, c0, c1 = t
            geo = _geometry(t, H, W, nlev)  # the same weights as pass 2 computes (see _tile_weights)
            x = src.rows(geo.xa, geo.xb, work.get("x", geo.xb - geo.xa, geo.xd - geo.xc, 3), geo.xc, geo.xd)
            w = _tile_weights(work, x, geo, params, H)
            wsum[r0:r1, c0:c1] += w[r0 - geo.wa:r1 - geo.wa, c0 - geo.wc:c1 - geo.wc]

        pool.map(p1, tiles)
        count += 1

    sizes = _level_sizes(H, W, nlev)
    result = [np.zeros((h, w, 3), _F32) for h, w in sizes]
    gauss = [None] + [np.empty((h, w, 3), _F32) for h, w in sizes[1:]]
    wdown = [np.empty(sizes[1], _F32)] if nlev else []
    seen = 0
    for src in sources():
        check(src)
        pool.map(lambda work, t, src=src: _level0_tile(
            work, t, [src], params, H, W, nlev, result[0], wdown, wsum_all=wsum,
            xdown=gauss[1] if nlev else None), tiles)
        if nlev:
            _upper_levels(gauss, wdown[0], result, sizes, pool)
        seen += 1
    if seen != count:
        raise ValueError("the image source gave a different number of images on its second pass; pass a "
                         "sequence or a callable that returns a fresh iterator")
    wsum = gauss = wdown = None  # free before the collapse  # type: ignore[assignment]
    return _finish(_collapse(result, pool))


def _chain(first: _Source, rest: Iterator[_Source]) -> Iterator[_Source]:
    yield first
    yield from rest


# ----------------------------------------------------------------------------------------------- public API
def mertens_fuse(images: Images, *, contrast: float = 1.0, saturation: float = 1.0, exposedness: float = 1.0,
                 sigma: float = 0.2, levels: int | None = None, grey_zero: bool = False) -> np.ndarray:
    """Mertens exposure fusion of exposures of one scene -> float32 (H, W, 3) sRGB, clipped to [0, 1].

    ``images``: (H, W, 3) RGB arrays, uint8 (/255), uint16 (/65535) or float (sRGB [0, 1], clipped to it),
    all the same size; weights are computed on these gamma-encoded values. Either

    * a sequence (list, tuple): never copied as a whole; blended tile by tile with all images at once (each
      weight computed once; memory grows by a quarter-size float32 map and a sixteenth-size RGB one per image); or
    * a zero-argument callable returning a fresh iterator (e.g. a generator function): it is called twice (pass 1:
      weight sum; pass 2: blending) and must yield the same images both times. Only one exposure is alive at a
      time, so memory does not grow with their number.

    A one-shot iterator (a generator object) is materialised into a list first (memory then grows).
    ``contrast``/``saturation``/``exposedness``: weight exponents (>= 0; 0 switches a term off). ``sigma``: width of
    the well-exposedness Gaussian around 0.5. ``levels``: number of pyrDown steps (the pyramid has levels + 1
    levels), default OpenCV's ``int(log2(min(H, W)))``; 0 gives the per-pixel weighted average.
    ``grey_zero``: give grey pixels a saturation of exactly 0 (stable weights, as :func:`fuse_exposures` does)
    instead of OpenCV's rounding noise. With the default False it matches ``cv2.createMergeMertens(contrast, saturation, exposedness).process`` on 8-bit input (see module doc).
    """
    resident = not callable(images)
    if callable(images):
        factory: Callable[[], Iterable[np.ndarray]] = images
    elif isinstance(images, Sequence):
        seq = images
        factory = lambda: seq  # noqa: E731
    elif isinstance(images, Iterable):
        seq = list(images)
        factory = lambda: seq  # noqa: E731
    else:
        raise TypeError("images must be a sequence of arrays or a callable returning an iterator")

    def sources() -> Iterator[_Source]:
        for img in factory():
            yield _source(img)

    return _fuse_sources(sources, contrast=contrast, saturation=saturation, exposedness=exposedness,
                         sigma=sigma, levels=levels, grey_zero=grey_zero, resident=resident)


def _codes(srgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8/uint16 (H, W, 3), identity table) of an image; floats exactly k/255 become 8-bit codes,
    other floats are rounded to 16-bit codes (error <= 0.5/65535, below what a 16-bit output can hold)."""
    if srgb.dtype == np.uint8:
        return srgb, _ID8
    if srgb.dtype == np.uint16:
        return srgb, _ID16
    x = srgb.astype(np.float32, copy=False)
    c8 = eight_bit_codes(x, rows=_CODE_ROWS)
    if c8 is not None:
        return c8, _ID8
    x = np.clip(x, 0.0, 1.0)
    c16 = np.empty(x.shape, np.uint16)
    with np.errstate(invalid="ignore"):  # a NaN gets a meaningless code here and is refused after the fusion
        np.rint(np.multiply(x, np.float32(65535)), out=c16, casting="unsafe")
    return c16, _ID16


def _is_grey(codes: np.ndarray) -> bool:
    """True when every pixel has R == G == B (a greyscale photo stored as RGB)."""
    step = max(1, codes.shape[0] // 64)  # cheap rejection on every 64th row first
    sub = codes[::step]
    if not (np.array_equal(sub[..., 0], sub[..., 1]) and np.array_equal(sub[..., 1], sub[..., 2])):
        return False
    return bool(np.array_equal(codes[..., 0], codes[..., 1]) and np.array_equal(codes[..., 1], codes[..., 2]))


def _ev_table(identity: np.ndarray, ev: float) -> np.ndarray:
    """``apply_ev`` over every code value: 256 or 65,536 float32 entries."""
    return apply_ev(identity.reshape(-1, 1), float(ev)).reshape(-1).astype(np.float32)


def fuse_exposures(srgb: np.ndarray, evs: Sequence[float], *, fast: bool = False, fast_long_edge: int = 1024,
                   contrast: float = 1.0, saturation: float = 1.0, exposedness: float = 1.0, sigma: float = 0.2,
                   levels: int | None = None, post: Callable[[np.ndarray], object] | None = None) -> np.ndarray:
    """The fusion renderer: Mertens fusion of the original and ``apply_ev(srgb, ev)`` for each ``ev`` (EV stops).

    ``srgb``: (H, W, 3) sRGB, float [0, 1], uint8 or uint16 (not modified). The exposures are never held as whole
    images: each is a lookup table of ``apply_ev`` over the photo's code values (float photos are first turned
    into 8-bit codes when they are exactly k/255, else into 16-bit codes), read strip by strip, original first.
    ``fast``: approximate (see module doc): fuse a copy whose long edge is ``fast_long_edge`` and transfer the
    result to full resolution by a guided filter; used only when the photo is over 1.25x that size.
    Other keywords as :func:`mertens_fuse`. Returns float32 sRGB (H, W, 3) in [0, 1]; with no EVs, the input
    as float32. Unlike :func:`mertens_fuse` (which reproduces OpenCV's float rounding), grey pixels get a saturation
    of exactly 0, and a greyscale photo is fused without the saturation factor: otherwise rounding noise decides
    the weights there and the result jumps when an EV changes by 1e-6 (see ``_weights``).
    ``post``: a per-pixel step applied in place to the result, block of rows by block of rows on the fusion's
    threads as they are finished (e.g. a look's tone curve; the same values as applying it afterwards).
    """
    if post is not None:
        out = fuse_exposures(srgb, evs, fast=fast, fast_long_edge=fast_long_edge, contrast=contrast,
                             saturation=saturation, exposedness=exposedness, sigma=sigma, levels=levels) \
            if fast or not evs else None
        if out is not None:
            post(out)
            return out
    a = _check_image(srgb)
    evs = [float(e) for e in evs]
    H, W = a.shape[:2]
    kw = dict(contrast=contrast, saturation=saturation, exposedness=exposedness, sigma=sigma, levels=levels)
    if fast and max(H, W) > 1.25 * fast_long_edge:
        return _fuse_fast(a, evs, long_edge=int(fast_long_edge), **kw)
    codes, identity = _codes(a)
    # a float photo that is exactly k/255 is read through its codes too (same values, cheaper)
    exact = a.dtype.kind != "f" or codes.dtype == np.uint8
    original: _Source = _LutSource(codes, identity) if exact else _FloatSource(a)
    if not evs:
        return original.rows(0, H, np.empty((H, W, 3), _F32))
    if kw["saturation"] != 0 and _is_grey(codes):
        kw["saturation"] = 0.0  # a greyscale photo has no saturation anywhere: that factor would zero every weight
    tables = [_ev_table(identity, ev) for ev in evs]

    def sources() -> Iterator[_Source]:
        yield original
        for t in tables:
            yield _LutSource(codes, t)

    return _fuse_sources(sources, grey_zero=True, resident=True, post=post, **kw)


def fuse_table_exposures(codes: np.ndarray, table: np.ndarray, evs: Sequence[float], *,
                         post: Callable[[np.ndarray], object] | None = None, **kw) -> np.ndarray:
    """``fuse_exposures(table[codes], evs, **kw)`` without making ``table[codes]``: ``codes`` uint8 (H, W, 3),
    ``table`` float (256,) sRGB (e.g. one global exposure of an 8-bit photo, ``render.global_table``).

    The same values as that call: the original is ``clip(table, 0, 1)[codes]`` (a float photo is read as it is),
    each exposure ``apply_ev`` over the 16-bit code that call rounds it to, now a 256-entry table of ``codes``
    (``cv2.LUT``: no 16-bit codes, no 65,536-entry lookups). Two corners differ: a table whose entries are all
    exactly k/255 (that call would read 8-bit codes: the same values up to float rounding of the weights), and the
    greyscale test, made on ``codes`` (that call tests the 16-bit codes: they differ only where the table maps
    different codes of one pixel onto one value everywhere). ``post``: a per-pixel step applied in place to each
    finished block of rows (``fuse_exposures``)."""
    codes = _check_image(codes)
    if codes.dtype != np.uint8:
        raise PhotoError(f"fuse_table_exposures needs uint8 codes, got {codes.dtype}")
    t = np.clip(np.asarray(table, np.float32).reshape(256), 0.0, 1.0)
    evs = [float(e) for e in evs]
    H, W = codes.shape[:2]
    original = _LutSource(codes, t)
    if not evs:
        out = original.rows(0, H, np.empty((H, W, 3), _F32))
        if post is not None:
            post(out)
        return out
    q = np.empty(256, np.uint16)
    np.rint(np.multiply(t, np.float32(65535)), out=q, casting="unsafe")  # as _codes rounds a float photo
    kw = dict(contrast=1.0, saturation=1.0, exposedness=1.0, sigma=0.2, levels=None) | kw
    if kw["saturation"] != 0 and _is_grey(codes):
        kw["saturation"] = 0.0
    tables = [np.ascontiguousarray(_ev_table(_ID16, ev)[q]) for ev in evs]

    def sources() -> Iterator[_Source]:
        yield original
        for tb in tables:
            yield _LutSource(codes, tb)

    return _fuse_sources(sources, grey_zero=True, resident=True, post=post, **kw)


# ----------------------------------------------------------------------------------------------- fast mode
def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def _guided_coefficients(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel guided filter (He et al. 2010) coefficients: src ~= a * guide + b in every (2r+1)^2 window,
    averaged over windows. Written with cv2.boxFilter because cv2.ximgproc is not in opencv-python-headless."""
    m_i, m_p = _box(guide, r), _box(src, r)
    cov = _box(guide * src, r) - m_i * m_p
    var = _box(guide * guide, r) - m_i * m_i
    a = cov / (var + np.float32(eps))
    b = m_p - a * m_i
    return _box(a, r), _box(b, r)


def _fuse_fast(a: np.ndarray, evs: list[float], *, long_edge: int, radius: int = 1, eps: float = 1e-4,
               **kw) -> np.ndarray:
    """Fuse at long edge ``long_edge``; transfer by guided upsampling of per-channel (a, b) with fused ~ a*I + b."""
    H, W = a.shape[:2]
    f = long_edge / max(H, W)
    size = (max(1, round(W * f)), max(1, round(H * f)))
    full = _source(a).rows(0, H, np.empty((H, W, 3), _F32))  # float32 [0, 1] copy, also the output buffer
    small = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
    fused = fuse_exposures(small, evs, **kw)
    ca, cb = _guided_coefficients(small, fused, radius, eps)
    for c in range(3):
        up_a = cv2.resize(np.ascontiguousarray(ca[..., c]), (W, H), interpolation=cv2.INTER_LINEAR)
        up_b = cv2.resize(np.ascontiguousarray(cb[..., c]), (W, H), interpolation=cv2.INTER_LINEAR)
        ch = full[..., c]
        up_a *= ch
        up_a += up_b
        full[..., c] = up_a
    return np.clip(full, 0.0, 1.0, out=full)
