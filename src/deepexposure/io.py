"""Read and write photos: pixels as float32 sRGB in [0, 1], metadata (EXIF, ICC) and bit depth kept.

Reading uses Pillow for 8-bit data and all metadata, and OpenCV for 16-bit pixel data (Pillow cannot hold
16-bit RGB). Writing: 8-bit through Pillow (EXIF and ICC kept for JPEG, PNG, TIFF, WebP); 16-bit PNG and TIFF
through OpenCV, after which the ICC profile (and EXIF for PNG) is added: PNG chunks by hand (iCCP/eXIf, a few
lines, since neither OpenCV nor Pillow writes 16-bit RGB PNG with metadata) and TIFF via tifffile.
Every write goes to a temporary file in the destination folder and is renamed into place, so an interrupted
run never leaves a half-written photo, and an existing file is never replaced unless asked.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from deepexposure.errors import PhotoError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "Photo",
    "PhotoError",
    "read_photo",
    "write_photo",
    "iter_photo_paths",
    "to_float",
    "from_float",
]

#: Largest photo read by default (width x height); above it the file is refused as a decompression bomb.
DEFAULT_MAX_PIXELS = 250_000_000
SUPPORTED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"})
_EIGHT_BIT_ONLY = frozenset({".jpg", ".jpeg", ".webp"})
_ALPHA_OK = frozenset({".png", ".tif", ".tiff", ".webp"})

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, never be padded with grey


@dataclass
class Photo:
    """A decoded photo.

    ``pixels``: float32 (H, W, 3) gamma-encoded sRGB in [0, 1] (grey is expanded to 3 channels).
    ``alpha``: float32 (H, W) in [0, 1] or None. ``bit_depth``: 8 or 16, the source's bits per channel.
    ``exif``/``icc_profile``: raw bytes or None. ``mode``: the source's Pillow mode (e.g. "RGB", "L", "P", "I;16").
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    exif: bytes | None = None
    icc_profile: bytes | None = None
    source: Path | None = None
    mode: str = "RGB"


def to_float(array: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 / uint16 / float array -> (float32 in [0, 1], bit depth 8 or 16). Floats are clipped to [0, 1]."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0, 8
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0, 16
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(a, 0.0, 1.0).astype(np.float32), 8
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return np.clip(a.astype(np.float32) / 255.0, 0, 1), 8
    raise ValueError(f"unsupported image dtype {a.dtype}")


def from_float(pixels: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """float in [0, 1] -> uint8 (bit_depth 8) or uint16 (16), rounding half up; values outside [0, 1] clip."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    peak = 255.0 if bit_depth == 8 else 65535.0
    q = np.floor(np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0) * peak + 0.5)
    return q.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise PhotoError(f"{path}: no such file")
    if path.is_dir():
        raise PhotoError(f"{path}: is a directory, not a photo")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path}: empty file (0 bytes)")


def _open(path: Path, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            # check the header's size before any pixel is decoded
            w, h = im.size
            if w * h > max_pixels:
                im.close()
                raise PhotoError(f"{path}: {w}x{h} = {w * h:,} pixels is above the limit of {max_pixels:,} "
                                 f"(raise --max-pixels if this photo is trusted)")
            return im
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(f"{path}: refused as a decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise PhotoError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except OSError as exc:
        raise PhotoError(f"{path}: cannot read ({exc})") from None


def _read_16bit(path: Path, transpose_like: Image.Image) -> np.ndarray | None:
    """16-bit pixels via OpenCV (RGB order, EXIF orientation applied by hand); None if OpenCV can't."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if data is None or data.dtype != np.uint16:
        return None
    if data.ndim == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    orientation = transpose_like.getexif().get(0x0112, 1)
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    if method is not None:
        data = _numpy_transpose(data, method)
    return data


def _numpy_transpose(a: np.ndarray, method: Image.Transpose) -> np.ndarray:
    T = Image.Transpose
    if method == T.FLIP_LEFT_RIGHT:
        return a[:, ::-1].copy()
    if method == T.FLIP_TOP_BOTTOM:
        return a[::-1].copy()
    if method == T.ROTATE_180:
        return a[::-1, ::-1].copy()
    if method == T.ROTATE_90:  # counter-clockwise
        return np.rot90(a, 1).copy()
    if method == T.ROTATE_270:
        return np.rot90(a, 3).copy()
    if method == T.TRANSPOSE:
        return np.swapaxes(a, 0, 1).copy()
    return np.rot90(np.swapaxes(a, 0, 1), 2).copy()  # TRANSVERSE


def read_photo(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Read a JPEG, PNG, TIFF (8/16-bit) or WebP photo, upright (EXIF orientation applied).

    Raises :class:`PhotoError` (one-line message) for a missing file, a folder, an empty, truncated or non-image
    file, or a photo above ``max_pixels`` (checked from the header before decoding).
    """
    path = Path(path)
    _check_readable(path)
    im = _open(path, max_pixels)
    with im:
        mode = im.mode
        exif = im.info.get("exif")
        icc = im.info.get("icc_profile")
        try:
            sixteen = mode in ("I;16", "I;16B", "I;16L", "I") or (
                path.suffix.lower() in (".png", ".tif", ".tiff") and _bits_per_sample(im) == 16)
            data = _read_16bit(path, im) if sixteen else None
            if data is None:
                up = ImageOps.exif_transpose(im)
                if up.mode in ("P", "PA"):
                    up = up.convert("RGBA" if "transparency" in up.info or up.mode == "PA" else "RGB")
                elif up.mode in ("I", "I;16", "F", "1", "CMYK", "YCbCr", "LAB", "HSV"):
                    up = up.convert("RGB") if up.mode not in ("I", "I;16", "F") else up.convert("L")
                elif up.mode == "LA":
                    up = up.convert("RGBA")
                data = np.asarray(up)
                data.setflags(write=True) if data.flags.owndata else None
        except (OSError, SyntaxError, ValueError) as exc:
            raise PhotoError(f"{path}: corrupt or truncated image ({exc})") from None
    if exif is not None:
        exif = _reset_orientation(exif)
    pixels, depth = to_float(data)
    if data.dtype == np.uint16:
        depth = 16
    alpha = None
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    elif pixels.shape[2] == 2:
        alpha = pixels[..., 1].copy()
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    elif pixels.shape[2] == 4:
        alpha = pixels[..., 3].copy()
        pixels = pixels[..., :3]
    return Photo(pixels=np.ascontiguousarray(pixels), alpha=alpha, bit_depth=depth, exif=exif, icc_profile=icc,
                 source=path, mode=mode)


def _bits_per_sample(im: Image.Image) -> int:
    tags = getattr(im, "tag_v2", None)
    if tags is not None and 258 in tags:
        bps = tags[258]
        return int(bps[0] if isinstance(bps, tuple) else bps)
    if im.format == "PNG":
        with open(im.filename, "rb") as fh:  # IHDR bit depth is byte 24 of a PNG file
            head = fh.read(25)
        return head[24] if len(head) == 25 else 8
    return 8


def _reset_orientation(exif: bytes) -> bytes:
    """EXIF bytes with the orientation tag set to 1 (the pixels we hold are already upright)."""
    try:
        ex = Image.Exif()
        ex.load(exif)
        if ex.get(0x0112, 1) != 1:
            ex[0x0112] = 1
        return ex.tobytes()
    except Exception:  # malformed EXIF: keep the bytes as they came
        return exif


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)


def _png_add_metadata(path: Path, exif: bytes | None, icc: bytes | None) -> None:
    """Insert iCCP / eXIf chunks right after IHDR of a PNG written by OpenCV."""
    data = path.read_bytes()
    ihdr_end = 8 + 8 + 13 + 4
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        extra += _png_chunk(b"eXIf", body)
    if extra:
        path.write_bytes(data[:ihdr_end] + extra + data[ihdr_end:])


def _encode(tmp: Path, suffix: str, arr: np.ndarray, photo: Photo, depth: int, quality: int) -> None:
    exif, icc = photo.exif, photo.icc_profile
    if depth == 16:
        if suffix in (".tif", ".tiff"):
            import tifffile

            extratags = [(34675, "B", len(icc), icc, False)] if icc else []
            tifffile.imwrite(tmp, arr, photometric="rgb", extratags=extratags,
                             extrasamples=[2] if arr.shape[2] == 4 else None)
            return
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(tmp), bgr):
            raise PhotoError(f"{tmp}: OpenCV could not encode a 16-bit image")
        _png_add_metadata(tmp, exif, icc)
        return
    im = Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB")
    kw: dict = {}
    if exif:
        kw["exif"] = exif
    if icc:
        kw["icc_profile"] = icc
    if suffix in (".jpg", ".jpeg"):
        kw.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
        fmt = "JPEG"
    elif suffix == ".webp":
        kw.update(quality=quality)
        fmt = "WEBP"
    elif suffix == ".png":
        fmt = "PNG"
    else:
        kw["compression"] = "tiff_deflate"
        fmt = "TIFF"
    im.save(tmp, format=fmt, **kw)


def write_photo(
    path: str | os.PathLike,
    photo: Photo | np.ndarray,
    *,
    bit_depth: int | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write a photo atomically; the format follows the suffix (.jpg .jpeg .png .tif .tiff .webp).

    ``photo``: a :class:`Photo` (EXIF, ICC and alpha carried over) or a float (H, W, 3) sRGB [0,1] / uint array.
    ``bit_depth``: 8 or 16; default the photo's own. JPEG and WebP are always written 8-bit; alpha is dropped
    for JPEG. Refuses to replace an existing file unless ``overwrite``. Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise PhotoError(f"{path}: unsupported output format {path.suffix or '(no suffix)'}; "
                         f"use one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}")
    if not isinstance(photo, Photo):
        px, depth0 = to_float(photo)
        if px.ndim == 2:
            px = np.repeat(px[..., None], 3, axis=2)
        photo = Photo(pixels=px[..., :3], alpha=px[..., 3] if px.shape[-1] == 4 else None, bit_depth=depth0)
    if path.exists() and not overwrite:
        raise PhotoError(f"{path}: exists (pass --overwrite to replace it)")
    if path.is_dir():
        raise PhotoError(f"{path}: is a directory")
    depth = 8 if suffix in _EIGHT_BIT_ONLY else int(bit_depth or photo.bit_depth)
    arr = photo.pixels
    if photo.alpha is not None and suffix in _ALPHA_OK:
        arr = np.concatenate([arr, photo.alpha[..., None]], axis=2)
    arr = np.ascontiguousarray(from_float(arr, depth))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PhotoError(f"{path.parent}: cannot create folder ({exc.strerror})") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        enc = tmp.with_name(tmp.name[: -len(".part")])  # encoders pick the format from the suffix
        tmp.rename(enc)
        tmp = enc
        _encode(tmp, suffix, arr, photo, depth, quality)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists() and not overwrite:  # appeared meanwhile
            raise PhotoError(f"{path}: exists (pass --overwrite to replace it)")
        os.replace(tmp, path)
    except PhotoError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise PhotoError(f"{path}: cannot write ({exc})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def iter_photo_paths(inputs: Iterable[str | os.PathLike], *, recursive: bool = False) -> list[Path]:
    """Expand files and folders to photo paths.

    A file is kept as given (so that reading it reports what is wrong); a folder contributes its files with a
    supported suffix (case-insensitive, hidden files skipped, sorted), descending into sub-folders when
    ``recursive``. A missing path raises :class:`PhotoError`.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() not in SUPPORTED_EXTENSIONS:
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(
                f for f in it
                if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            out.extend(found)
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise PhotoError(f"{p}: no such file or folder")
    return out
