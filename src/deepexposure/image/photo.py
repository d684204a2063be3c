"""The decoded photo and its limits: :class:`Photo`, the suffixes read and written, float <-> integer pixels, and
the pixel limit that guards against decompression bombs and photos larger than the free memory.

Pixels are float32 gamma-encoded sRGB in [0, 1], shape (H, W, 3); integer pixels are uint8 (0-255) or uint16
(0-65535). Shared by :mod:`deepexposure.image.io` (Pillow, OpenCV, tifffile) and :mod:`deepexposure.image.raw`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from deepexposure.errors import PhotoError, PixelLimitError
from deepexposure.memory import available_memory

__all__ = ["DEFAULT_MAX_PIXELS", "BYTES_PER_PIXEL", "SUPPORTED_EXTENSIONS", "RAW_EXTENSIONS", "Photo", "as_photo", "to_float",
           "to_rgbx", "from_float", "available_memory", "default_max_pixels", "check_readable", "too_big"]

#: Largest photo read by default (width x height); above it the file is refused as a decompression bomb. The
#: command line uses :func:`default_max_pixels`, which is also bounded by the free memory.
DEFAULT_MAX_PIXELS = 250_000_000
#: Peak memory per pixel of a photo being enhanced or rendered (fusion renderer, the heavier one: about 50 bytes
#: measured at 12 MP), with a margin.
BYTES_PER_PIXEL = 64
#: Suffixes read and written (lower case; matching is case-insensitive).
SUPPORTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"})
#: Camera RAW suffixes read through rawpy / LibRaw (:mod:`deepexposure.image.raw`, the ``raw`` extra); never written.
RAW_EXTENSIONS = frozenset({".dng", ".crw", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
                            ".rw2", ".pef", ".srw", ".rwl", ".raw", ".3fr", ".erf", ".kdc", ".dcr", ".mrw", ".x3f",
                            ".iiq", ".mos"})


_MAKING_PIXELS = threading.Lock()


class _Pixels:
    """``Photo.pixels``: stored as given or, for a photo made by :meth:`Photo.from_codes`, made from its 8-bit
    ``codes`` on first access (``to_float``). Work that reads the codes themselves (the fusion renderer's and the
    global exposure's lookup tables) then never pays for the float copy: four times the codes' size, 144 MB of
    fresh memory at 12 MP and about 0.15 s of conversion and page faults (issue 23). The codes are dropped when the
    pixels are made or assigned: from then on the pixels may be changed in place, and the codes would not say so."""

    def __get__(self, obj: Photo | None, owner: type | None = None) -> np.ndarray | None:
        if obj is None:
            return None  # the dataclass default (refused by __set__): Photo() still says pixels are missing
        px = obj.__dict__.get("_pixels")
        if px is None:
            with _MAKING_PIXELS:  # threads reading at once get the same array (an edit of it is the photo's)
                px = obj.__dict__.get("_pixels")
                if px is None:
                    px = obj.__dict__["_pixels"] = to_float(obj.__dict__["_codes"])[0]
                    del obj.__dict__["_codes"]
        return px

    def __set__(self, obj: Photo, value: np.ndarray | _Codes | None) -> None:
        if value is None:
            raise TypeError("Photo needs pixels")
        if isinstance(value, _Codes):
            obj.__dict__["_pixels"], obj.__dict__["_codes"] = None, value.codes
        else:
            obj.__dict__["_pixels"] = value
            obj.__dict__.pop("_codes", None)


class _Codes(NamedTuple):
    """What :meth:`Photo.from_codes` passes as ``pixels``: the codes they are to be made from."""

    codes: np.ndarray


@dataclass
class Photo:
    """A decoded photo.

    ``pixels``: float32 (H, W, 3) gamma-encoded sRGB in [0, 1] (grey is expanded to 3 channels).
    ``alpha``: float32 (H, W) in [0, 1] or None. ``bit_depth``: 8 or 16, the source's bits per channel.
    ``exif``: raw EXIF bytes (``Exif\\0\\0`` + TIFF header, orientation already reset to 1) or None.
    ``icc_profile``: raw ICC bytes or None. ``mode``: the source's Pillow mode (e.g. "RGB", "L", "P", "I;16";
    Pillow reports "RGB"/"RGBA" for 16-bit colour PNG and TIFF, ``bit_depth`` tells them apart).
    ``codes`` (read only): the uint8 (H, W, 3) sRGB codes of an 8-bit colour photo read by
    :func:`deepexposure.image.io.read_photo` whose float ``pixels`` (= codes / 255) have not been read yet; None
    otherwise (once read, the pixels may be changed in place, and they are the photo).
    """

    pixels: np.ndarray = _Pixels()  # type: ignore[assignment]
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    exif: bytes | None = None
    icc_profile: bytes | None = None
    source: Path | None = None
    mode: str = "RGB"

    @classmethod
    def from_codes(cls, codes: np.ndarray, **meta) -> Photo:
        """A photo of uint8 (H, W, 3) sRGB codes whose float ``pixels`` are made only when first read."""
        if codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[2] != 3:
            raise ValueError(f"codes must be uint8 (H, W, 3), got {codes.dtype} {codes.shape}")
        return cls(pixels=_Codes(codes), **meta)

    @property
    def codes(self) -> np.ndarray | None:
        """The uint8 (H, W, 3) codes of an 8-bit colour photo whose pixels (= codes / 255) were not read yet, or
        None (see the class doc)."""
        return self.__dict__.get("_codes")

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels, without converting the codes."""
        a = self.__dict__.get("_pixels")
        return tuple((a if a is not None else self.__dict__["_codes"]).shape[:2])  # type: ignore[return-value]


def to_float(array: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 / uint16 / float / bool array -> (float32 in [0, 1], bit depth 8 or 16).

    uint8 is divided by 255, uint16 by 65535 (depth 16); floats are clipped to [0, 1] (NaN -> 0) and reported as
    depth 8; bool maps to {0, 1}. Other integer types raise ``ValueError`` (their range is ambiguous).
    A new array is always returned.
    """
    a = np.asarray(array)
    if a.dtype == np.uint8:
        if a.size and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (2, 3, 4))):
            import cv2

            # one pass through a 256-entry table: the same values as a.astype(float32) / 255 (tested), without
            # the full-size float temporary
            return cv2.LUT(np.ascontiguousarray(a), _ID8), 8
        return a.astype(np.float32) / np.float32(255.0), 8
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0), 16
    if a.dtype == np.bool_:
        return a.astype(np.float32), 8
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(np.nan_to_num(a.astype(np.float32), nan=0.0), 0.0, 1.0), 8
    raise ValueError(f"unsupported image dtype {a.dtype}: use uint8, uint16 or float in [0, 1]")


_ID8 = np.arange(256, dtype=np.float32) / np.float32(255.0)


def as_photo(photo: Photo | np.ndarray) -> Photo:
    """``photo`` itself, or a bare array (uint8, uint16 or float sRGB (H, W), (H, W, 3) or (H, W, 4)) as a Photo."""
    if isinstance(photo, Photo):
        return photo
    px, depth = to_float(photo)
    if px.ndim == 2:
        px = np.repeat(px[..., None], 3, axis=2)
    if px.ndim != 3 or px.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {np.shape(photo)}")
    return Photo(pixels=px[..., :3], alpha=px[..., 3] if px.shape[2] == 4 else None, bit_depth=depth)


def from_float(pixels: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """float in [0, 1] -> uint8 (``bit_depth`` 8) or uint16 (16): ``floor(x * peak + 0.5)``, i.e. round half up.

    Values outside [0, 1] are clipped, NaN becomes 0. ``from_float(to_float(u)[0], depth)`` returns ``u`` exactly.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    x = np.atleast_1d(np.asarray(pixels, dtype=np.float32))
    out = np.empty(x.shape, np.uint8 if bit_depth == 8 else np.uint16)
    _quantize(x, out, np.float32(255.0 if bit_depth == 8 else 65535.0))
    return out.reshape(np.shape(pixels))


def to_rgbx(pixels: np.ndarray) -> np.ndarray:
    """float sRGB (H, W, 3) [0, 1] -> uint8 (H, W, 4): ``from_float(pixels)`` with a fourth byte of padding (255),
    Pillow's RGBX layout, which ``PIL.Image.frombuffer`` shares instead of copying (Pillow stores RGB as 4 bytes
    a pixel, so ``fromarray`` of 3-channel codes copies them)."""
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) pixels, got shape {x.shape}")
    out = np.empty(x.shape[:2] + (4,), np.uint8)
    _quantize(x, out, np.float32(255.0))
    return out


#: Above this many values the quantisation runs on two threads (numpy releases the GIL; a 12 MP photo: 0.05-0.06 s
#: on one, 0.03-0.04 on two).
_THREADED_VALUES = 1 << 22


def _quantize(x: np.ndarray, out: np.ndarray, peak: np.float32) -> None:
    """``out`` = ``floor(clip(x, 0, 1) * peak + 0.5)`` (NaN -> 0) in blocks of rows, so that no full-size float
    temporary is made (five of them cost ~0.2 s at 12 MP in allocation and page faults). ``out`` has x's shape,
    or, for (H, W, 3) ``x``, is uint8 (H, W, 4) and gets RGBX (padding 255). Clipping after the product is the same
    (x * peak is >= peak exactly when x >= 1), and the cast of a value >= 0 truncates, i.e. floors."""
    import cv2

    rows = max(1, (1 << 18) // max(1, x[:1].size))
    rgbx = out.ndim == 3 and out.shape[2] == 4 and x.shape[2] == 3

    def run(r0: int, r1: int) -> None:
        tmp = np.empty((min(rows, r1 - r0),) + x.shape[1:], np.uint8) if rgbx else None
        for a in range(r0, r1, rows):
            b = min(r1, a + rows)
            q = np.multiply(x[a:b], peak)  # a copy
            np.fmax(q, np.float32(0.0), out=q)  # NaN -> 0 (fmax ignores NaN), -inf -> 0
            np.fmin(q, peak, out=q)  # +inf -> peak
            q += np.float32(0.5)
            if rgbx:
                np.copyto(tmp[:b - a], q, casting="unsafe")
                cv2.cvtColor(tmp[:b - a], cv2.COLOR_RGB2RGBA, dst=out[a:b])
            else:
                np.copyto(out[a:b], q, casting="unsafe")

    n = len(x)
    if x.size < _THREADED_VALUES or n < 2 * rows:
        run(0, n)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        for f in [ex.submit(run, 0, n // 2), ex.submit(run, n // 2, n)]:
            f.result()


def eight_bit_codes(pixels: np.ndarray, rows: int = 128) -> np.ndarray | None:
    """The uint8 codes of float sRGB pixels that are exactly ``k / 255`` everywhere (what :func:`to_float` makes of
    an 8-bit photo: ``to_float(codes)[0] == pixels``), else None. Checked in blocks of ``rows`` rows, stopping at
    the first block that is not (no full-size temporaries)."""
    import cv2

    x = np.asarray(pixels)
    if x.dtype != np.float32 or x.ndim != 3 or x.shape[2] != 3:
        return None
    ident = np.arange(256, dtype=np.float32) / np.float32(255.0)
    out = np.empty(x.shape, np.uint8)
    for r0 in range(0, x.shape[0], rows):
        xb = x[r0:r0 + rows]
        cb = cv2.convertScaleAbs(xb, alpha=255.0)  # round(255 |x|), saturated to uint8
        if not np.array_equal(cv2.LUT(cb, ident), xb):  # fails for anything outside {k/255}, negatives included
            return None
        out[r0:r0 + rows] = cb
    return out


def default_max_pixels(jobs: int = 1) -> tuple[int, str]:
    """The pixel limit the command line uses by default, and why: :data:`DEFAULT_MAX_PIXELS`, or less when the free
    memory shared by ``jobs`` processes cannot hold such a photo (:data:`BYTES_PER_PIXEL` each, 90% of it used)."""
    mem = available_memory()
    if mem is None:
        return DEFAULT_MAX_PIXELS, "default"
    fits = int(mem * 0.9 / BYTES_PER_PIXEL / max(1, jobs))
    if fits >= DEFAULT_MAX_PIXELS:
        return DEFAULT_MAX_PIXELS, "default"
    per = f" per process with {jobs} jobs" if jobs > 1 else ""
    return max(1_000_000, fits), f"what {mem / 2**30:.1f} GiB of free memory holds{per}"


def check_readable(path: Path) -> None:
    """A one-line :class:`PhotoError` for a path that cannot be a photo: missing, a broken link, a folder, unreadable or empty."""
    if not path.exists():
        if path.is_symlink():
            raise PhotoError(f"{path}: broken or looping symbolic link")
        raise PhotoError(f"{path}: no such file")
    if path.is_dir():
        raise PhotoError(f"{path}: is a directory, not a photo")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PhotoError(f"{path}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise PhotoError(f"{path}: empty file (0 bytes)")


def too_big(path: Path, w: int, h: int, max_pixels: int, why: str | None = None) -> PixelLimitError:
    """The error for a ``w`` x ``h`` photo above ``max_pixels`` (``why``: where the limit comes from)."""
    why = why or "decompression bomb guard"
    return PixelLimitError(f"{path}: {w}x{h} = {w * h:,} pixels is above the limit of {max_pixels:,} "
                      f"({why}; raise --max-pixels / max_pixels if this photo is trusted and fits in memory)")
