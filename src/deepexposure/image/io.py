"""Read and write photos: pixels as float32 sRGB in [0, 1], metadata (EXIF, ICC) and bit depth kept.

Camera RAW files (:data:`RAW_EXTENSIONS`) are read by :mod:`deepexposure.image.raw` (rawpy), never written.

Reading: Pillow opens every file (header, size check, EXIF, ICC, 8-bit pixels; complete 8-bit colour JPEGs are
decoded by OpenCV, the same pixels twice as fast); 16-bit pixel data, which Pillow
reduces to 8 bits for RGB, comes from OpenCV (PNG) or tifffile (TIFF, whose stored pixels we orient ourselves:
OpenCV 5 rotates TIFFs by their orientation tag whatever the flags). Every photo comes back upright.

Writing: 8-bit through Pillow (EXIF and ICC kept for JPEG, PNG, TIFF and WebP). 16-bit PNG through OpenCV,
then iCCP/eXIf chunks are inserted by hand (a few lines: neither OpenCV nor Pillow writes 16-bit RGB PNG with
metadata). 16-bit TIFF through tifffile (deflate) with the ICC profile as tag 34675; **EXIF is not written to
16-bit TIFF** (tifffile cannot write an EXIF sub-IFD): only the camera make and model, the dates, artist, copyright,
exposure time, f-number, ISO and focal length go into IFD0, as TIFF/EP places them. 8-bit TIFF is deflate-compressed, except when it carries
EXIF: then it is written uncompressed (libtiff, which Pillow uses to compress, cannot write the EXIF sub-IFD). An ICC profile whose colour space is not RGB (a grey or CMYK source
profile) is not written, as the output is always RGB. JPEG and WebP are always 8-bit; JPEG drops alpha.
Every write goes to a temporary file in the destination folder, is fsynced and renamed into place, so an
interrupted run never leaves a half-written photo, and an existing file is never replaced unless asked.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from deepexposure.atomic import atomic_write, blocked_by
from deepexposure.errors import PhotoError
from deepexposure.image.photo import (
    DEFAULT_MAX_PIXELS,
    RAW_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    Photo,
    as_photo,
    available_memory,
    check_readable,
    default_max_pixels,
    from_float,
    to_float,
    to_rgbx,
    too_big,
)

__all__ = ["DEFAULT_MAX_PIXELS", "available_memory", "default_max_pixels", "SUPPORTED_EXTENSIONS", "RAW_EXTENSIONS",
           "Photo", "PhotoError", "read_photo", "write_photo", "iter_photo_paths", "to_float", "from_float", "to_rgbx"]

_EIGHT_BIT_ONLY = frozenset({".jpg", ".jpeg", ".webp", ".bmp"})
_ALPHA_OK = frozenset({".png", ".tif", ".tiff", ".webp"})  # BMP: written without alpha (few readers handle it)
_ORIENTATION = 0x0112
# IFD0 tags of a TIFF source worth carrying as EXIF (the rest describe the TIFF's own strips and layout).
_TIFF_EXIF_TAGS = frozenset({270, 271, 272, 274, 305, 306, 315, 33432, 0x8769, 0x8825})

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, never be padded with grey
_BOMB_LOCK = threading.Lock()  # guards the temporary raise of Pillow's global pixel limit


# ----------------------------------------------------------------------------------------------- reading


# Signatures of file formats (first bytes), to say what a file with the wrong suffix really is.
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG", ".jpg"), (b"\x89PNG\r\n\x1a\n", "PNG", ".png"),
                (b"BM", "BMP", ".bmp"))
_RAW_MAGIC = ((6, b"HEAPCCDR"), (0, b"FUJIFILMCCD-RAW"), (0, b"IIRO"), (0, b"IIRS"), (0, b"IIU\x00"), (4, b"ftypcrx "),
              (8, b"CR\x02"))  # CRW, RAF, ORF, ORF, RW2, CR3, CR2


def read_head(path: str | os.PathLike, n: int = 16) -> bytes:
    """The first ``n`` bytes of a file (to tell formats apart by content); ``b""`` when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _not_a_raw(path: Path) -> None:
    """Raise :class:`PhotoError` when a file with a RAW suffix is in fact a JPEG, PNG, BMP or WebP photo."""
    head = read_head(path)
    found = [(name, ext) for magic, name, ext in _IMAGE_MAGIC if head.startswith(magic)]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        found = [("WebP", ".webp")]
    if found:
        name, ext = found[0]
        raise PhotoError(f"{path}: a {name} file, not a camera RAW ({path.suffix} is a RAW suffix): name it {ext}")


def _raw_in_disguise(path: Path, im: Image.Image | None) -> bool:
    """Whether a file without a RAW suffix is a camera RAW: a RAW signature, or a TIFF whose first image is a
    camera's (DNG, TIFF/EP, CR2) or a reduced preview with the full image in a sub-IFD (NEF, ...)."""
    head = read_head(path)
    if any(head[i : i + len(m)] == m for i, m in _RAW_MAGIC):
        return True
    if im is None or im.format != "TIFF":
        return False
    tags = im.tag_v2
    return 50706 in tags or 37398 in tags or (bool(int(tags.get(254, 0) or 0) & 1) and 330 in tags)


def _raw_error(path: Path) -> PhotoError:
    return PhotoError(f"{path}: a camera RAW file with a {path.suffix or 'missing'} suffix (read as such, only its "
                      "preview or nothing would come out): give it its RAW suffix (.NEF, .CR2, .DNG, ...)")


def _open(path: Path, max_pixels: int, why: str | None = None) -> Image.Image:
    """Open lazily (header only) and refuse photos above ``max_pixels`` before any pixel is decoded.

    Pillow's own guard (warning above ``Image.MAX_IMAGE_PIXELS``, error above twice that) is silenced in favour of
    ours: when Pillow refuses, the file is reopened (header only) with Pillow's global limit lifted for the
    duration of the call (under a lock, as it is process-wide), so the refusal always quotes our limit.
    """
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
        except Image.DecompressionBombError:
            with _BOMB_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    im = Image.open(path)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    except Image.DecompressionBombError as exc:
        raise PhotoError(f"{path}: refused as a decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        if _raw_in_disguise(path, None):
            raise _raw_error(path) from None
        raise PhotoError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except OSError as exc:
        raise PhotoError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # malformed headers make Pillow raise many types (SyntaxError, struct.error, ...)
        raise PhotoError(f"{path}: corrupt image header ({type(exc).__name__}: {exc})") from None
    if _raw_in_disguise(path, im):
        im.close()
        raise _raw_error(path)
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise too_big(path, w, h, max_pixels, why)
    if w == 0 or h == 0:
        im.close()
        raise PhotoError(f"{path}: image has no pixels ({w}x{h})")
    frames = _frames(im)
    if frames > 1:
        im.close()
        raise PhotoError(f"{path}: a {im.format} of {frames} frames (pages or an animation); deepexposure reads single "
                         "photos and would keep only the first: save the frame you want as a file of its own")
    return im


def _frames(im: Image.Image) -> int:
    """How many full images ``im`` holds: 1 for a single photo, also for a JPEG's multi-picture extras (MPO: the
    photo first, then previews or depth maps) and a TIFF's reduced-resolution pages (thumbnails, pyramids)."""
    if im.format == "MPO" or not getattr(im, "is_animated", False):
        return 1
    try:
        if im.format != "TIFF":
            return int(getattr(im, "n_frames", 2))
        full = 0
        for i in range(int(im.n_frames)):
            im.seek(i)
            full += not int(im.tag_v2.get(254, 0) or 0) & 1  # NewSubfileType bit 0: a reduced-resolution copy
        im.seek(0)
        return max(1, full)
    except Exception as exc:  # a broken later page: the file is refused as corrupt, not half-read
        raise PhotoError(f"{im.filename}: corrupt {im.format} page ({type(exc).__name__}: {exc})") from None


def _bits_per_sample(im: Image.Image, path: Path) -> int:
    if im.format == "TIFF":
        bps = im.tag_v2.get(258, 8)
        return int(bps[0] if isinstance(bps, tuple) else bps)
    if im.format == "PNG":
        with open(path, "rb") as fh:
            head = fh.read(25)
        return head[24] if len(head) > 24 else 8  # IHDR bit depth: byte 24 of a PNG file
    return 8


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W[, C]) array, as ``PIL.ImageOps.exif_transpose`` does."""
    if orientation in (5, 6, 7, 8):
        a = {5: lambda x: np.swapaxes(x, 0, 1),  # transpose
             6: lambda x: np.rot90(x, -1),  # rotate 90 degrees clockwise
             7: lambda x: np.rot90(np.swapaxes(x, 0, 1), 2),  # transverse
             8: lambda x: np.rot90(x, 1)}[orientation](a)
    elif orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    return np.ascontiguousarray(a)


def _read_tiff16(raw: bytes) -> np.ndarray | None:
    """First page of a 16-bit TIFF as stored (not oriented), channels last; None if it is not grey/RGB uint16."""
    import io

    import tifffile

    with tifffile.TiffFile(io.BytesIO(raw)) as tif:
        page = tif.pages[0]
        if int(page.photometric) not in (1, 2):  # MINISBLACK, RGB; others go through Pillow
            return None
        data = page.asarray()
        if data.ndim == 3 and int(page.planarconfig) == 2:  # separate planes: (S, H, W)
            data = np.moveaxis(data, 0, -1)
    return data if data.dtype == np.uint16 else None


def _read_png16(raw: bytes) -> np.ndarray | None:
    """16-bit data via OpenCV in RGB(A) order; None if OpenCV fails or gives another depth.

    PNGs come back as stored (OpenCV 5 does not orient them with IMREAD_UNCHANGED); TIFFs come back oriented.
    """
    data = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16:
        return None
    if data.ndim == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return data


def _jpeg_pixels(im: Image.Image, path: Path) -> np.ndarray | None:
    """An 8-bit colour JPEG decoded by OpenCV (libjpeg-turbo as Pillow's: same pixels, tested; 2x faster at 12 MP),
    upright by its EXIF orientation; None for anything else, and for a file not ending with the JPEG end marker
    (OpenCV pads a truncated file with grey where Pillow refuses it; trailing bytes, e.g. MPO: Pillow as before)."""
    raw = path.read_bytes() if im.format == "JPEG" and im.mode == "RGB" else b""
    if not raw.endswith(b"\xff\xd9"):
        return None
    flag = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR)  # RGB from OpenCV 4.10 on, BGR before
    data = cv2.imdecode(np.frombuffer(raw, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    data = data if data is None or flag != cv2.IMREAD_COLOR else cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    if data is None or data.shape != (im.size[1], im.size[0], 3) or data.dtype != np.uint8:
        return None
    return _orient(data, int(im.getexif().get(_ORIENTATION, 1) or 1))


def _pillow_pixels(im: Image.Image) -> np.ndarray:
    """Decode through Pillow, upright, as uint8 L/LA/RGB/RGBA (or uint16 grey) array."""
    up = ImageOps.exif_transpose(im)
    if up.mode in ("P", "PA"):
        up = up.convert("RGBA" if "transparency" in up.info or up.mode == "PA" else "RGB")
    elif up.mode in ("I;16", "I;16L", "I;16B"):
        return np.asarray(up).astype(np.uint16)
    elif up.mode in ("I", "F"):
        raise PhotoError(f"unsupported {'32-bit integer' if up.mode == 'I' else 'floating-point'} samples")
    elif up.mode not in ("L", "LA", "RGB", "RGBA"):
        up = up.convert("RGBA" if "A" in up.mode or "transparency" in up.info else "RGB")
    return np.asarray(up)


def _source_exif(im: Image.Image) -> bytes | None:
    """EXIF bytes of the source with orientation reset to 1 (our pixels are upright); None if it has none."""
    try:
        if im.format == "TIFF":  # EXIF lives in the TIFF's own IFD: keep the descriptive tags only
            ex = im.getexif()
            for tag in list(ex):
                if tag not in _TIFF_EXIF_TAGS:
                    del ex[tag]
            if not len(ex):
                return None
        else:
            raw = im.info.get("exif")
            if not raw:
                return None
            ex = Image.Exif()
            ex.load(raw)
            if ex.get(_ORIENTATION, 1) == 1:
                return raw
        if _ORIENTATION in ex:
            ex[_ORIENTATION] = 1
        return ex.tobytes()
    except Exception:  # malformed EXIF: better dropped than breaking the read or the output file
        return None


def read_photo(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_pixels_why: str | None = None
               ) -> Photo:
    """Read a JPEG, PNG, TIFF (8/16-bit), WebP or BMP photo, upright (EXIF orientation applied), or a camera RAW
    file (a suffix of :data:`RAW_EXTENSIONS`: a :class:`deepexposure.image.raw.RawPhoto`, see that module).

    Returns a :class:`Photo`: float32 (H, W, 3) sRGB [0, 1] pixels (grey expanded, palette converted), alpha
    float32 (H, W) or None, ``bit_depth`` 8 or 16, EXIF (orientation reset to 1) and ICC bytes (an 8-bit colour
    photo also keeps its uint8 ``codes``, and its float pixels are made when first read). Pixels are not
    colour-managed: the ICC profile is carried, not applied. A file of several full frames (multi-page TIFF,
    animated GIF, PNG or WebP) is refused; a JPEG's multi-picture extras and a TIFF's reduced-resolution pages are
    ignored.
    Raises :class:`PhotoError` (one-line message naming the file) for a missing file, a folder, an empty,
    truncated or non-image file, or a photo above ``max_pixels`` (width x height, checked from the header before
    decoding; ``max_pixels_why`` says where the limit comes from, for the message).
    """
    path = Path(path)
    check_readable(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        _not_a_raw(path)  # before rawpy is needed
        from deepexposure.image.raw import read_raw

        return read_raw(path, max_pixels=max_pixels, max_pixels_why=max_pixels_why)
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # also if someone switched it on since import
    im = _open(path, max_pixels, max_pixels_why)
    with im:
        mode = im.mode
        try:
            data = None
            if _bits_per_sample(im, path) == 16 and im.format in ("TIFF", "PNG"):
                raw = path.read_bytes()
                orientation = int(im.getexif().get(_ORIENTATION, 1) or 1)
                if im.format == "PNG":
                    data = _read_png16(raw)
                    data = None if data is None else _orient(data, orientation)
                else:
                    try:
                        data = _read_tiff16(raw)
                        data = None if data is None else _orient(data, orientation)
                    except Exception:  # e.g. a codec tifffile lacks without imagecodecs: try OpenCV
                        data = _read_png16(raw)  # (OpenCV orients TIFFs itself)
                        if data is None:
                            raise
            if data is None:
                data = _jpeg_pixels(im, path)
            if data is None:
                data = _pillow_pixels(im)
        except PhotoError as exc:
            raise PhotoError(f"{path}: {exc}") from None
        except MemoryError:
            raise
        except Exception as exc:  # Pillow: OSError on truncation; fuzzed files raise about anything
            raise PhotoError(f"{path}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None
        exif = _source_exif(im)
        icc = im.info.get("icc_profile") or None
    depth = 16 if data.dtype == np.uint16 else 8
    if data.dtype == np.uint8 and data.ndim == 3 and data.shape[2] == 3:  # float pixels made when first read
        return Photo.from_codes(np.ascontiguousarray(data), alpha=None, bit_depth=8, exif=exif, icc_profile=icc,
                                source=path, mode=mode)
    pixels, _ = to_float(data)
    alpha = None
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    elif pixels.shape[2] == 2:
        alpha = pixels[..., 1].copy()
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    elif pixels.shape[2] >= 4:
        alpha = pixels[..., 3].copy()
        pixels = pixels[..., :3]
    return Photo(pixels=np.ascontiguousarray(pixels), alpha=alpha, bit_depth=depth, exif=exif, icc_profile=icc,
                 source=path, mode=mode)


# ----------------------------------------------------------------------------------------------- writing


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)


def _png_with_metadata(png: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """Insert iCCP / eXIf chunks right after IHDR (both must precede IDAT) of a PNG written by OpenCV."""
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    return png[:ihdr_end] + extra + png[ihdr_end:]


def _rgb_icc(icc: bytes | None) -> bytes | None:
    """The ICC profile if it describes RGB data (header bytes 16-19), else None: outputs are always RGB."""
    return icc if icc and len(icc) >= 128 and icc[16:20] == b"RGB " else None


# EXIF tags written into IFD0 of a 16-bit TIFF (TIFF/EP places the capture settings there; tifffile cannot write an
# EXIF sub-IFD): (tag, IFD they come from (0 = IFD0, 0x8769 = EXIF), kind).
_TIFF_EP_TAGS = ((271, 0, "s"), (272, 0, "s"), (306, 0, "s"), (315, 0, "s"), (33432, 0, "s"),
                 (33434, 0x8769, "r"), (33437, 0x8769, "r"), (34855, 0x8769, "H"), (36867, 0x8769, "s"),
                 (37386, 0x8769, "r"))


def _tiff_ep_tags(exif: bytes | None) -> list[tuple]:
    """tifffile ``extratags`` for the camera, date and exposure tags of ``exif`` (see :data:`_TIFF_EP_TAGS`); a tag
    that cannot be read or written as its TIFF type is left out."""
    if not exif:
        return []
    try:
        ex = Image.Exif()
        ex.load(exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
        ifds = {0: ex, 0x8769: ex.get_ifd(0x8769)}
    except Exception:  # malformed EXIF: written without these tags rather than failing the write
        return []
    tags = []
    for tag, ifd, kind in _TIFF_EP_TAGS:
        v = ifds[ifd].get(tag)
        if v is None or v == "" or v == ():
            continue
        try:
            if kind == "r" and isinstance(v, tuple) and len(v) == 2:  # a rational stored as two integers
                v = Fraction(int(v[0]), int(v[1]))
            elif isinstance(v, tuple):
                v = v[0]
            if kind == "s":
                text = str(v).rstrip("\x00")
                if text:
                    tags.append((tag, "s", 0, text, True))
            elif kind == "H":
                tags.append((tag, "H", 1, min(65535, max(0, int(v))), True))
            else:
                f = Fraction(float(v)).limit_denominator(100_000)
                if 0 <= f.numerator < 2**32:
                    tags.append((tag, "2I", 1, (f.numerator, f.denominator), True))
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            continue
    return tags


def _encode(fh, suffix: str, arr: np.ndarray, exif: bytes | None, icc: bytes | None, depth: int,
            quality: int, rgbx: bool = False) -> None:
    """Encode ``arr`` (uint8/uint16 (H, W, 3|4), RGB(A); with ``rgbx``, uint8 (H, W, 4) whose 4th channel is
    padding, for JPEG) into the open binary file ``fh``.

    The codec writes into memory and the bytes go to ``fh`` through Python's ``write``, which raises on a short
    write: given a real file, Pillow's encoders write to its descriptor themselves and take a short write (a full
    disk, a file size limit) for success, so a truncated photo would pass as written.
    """
    import io

    buf = io.BytesIO()
    _encode_to(buf, suffix, arr, exif, icc, depth, quality, rgbx)
    fh.write(buf.getbuffer())


def _encode_to(fh, suffix: str, arr: np.ndarray, exif: bytes | None, icc: bytes | None, depth: int,
               quality: int, rgbx: bool = False) -> None:
    """:func:`_encode` into a file-like object ``fh``."""
    if depth == 16:
        if suffix in (".tif", ".tiff"):
            import tifffile

            extratags = [(34675, "B", len(icc), icc, False)] if icc else []
            extratags += _tiff_ep_tags(exif)
            tifffile.imwrite(fh, arr, photometric="rgb", compression="zlib", predictor=True, extratags=extratags,
                             metadata=None, software=False,
                             extrasamples=[2] if arr.shape[2] == 4 else None)
            return
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", bgr)
        if not ok:
            raise OSError("OpenCV could not encode a 16-bit PNG")
        fh.write(_png_with_metadata(buf.tobytes(), exif, icc))
        return
    # an RGBX buffer is shared by Pillow (which stores RGB as 4 bytes a pixel, so fromarray copies it)
    im = Image.frombuffer("RGBX", arr.shape[1::-1], arr, "raw", "RGBX", 0, 1) if rgbx else Image.fromarray(arr)
    kw: dict = {}
    if exif:
        kw["exif"] = exif
    if icc:
        kw["icc_profile"] = icc
    if suffix in (".jpg", ".jpeg"):
        # no optimize=True (Huffman tables per image): 3x slower encoding at 12 MP for 2% smaller files
        kw.update(format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    elif suffix == ".webp":
        kw.update(format="WEBP", quality=quality)
    elif suffix == ".png":
        kw.update(format="PNG")
    elif suffix == ".bmp":
        kw = {"format": "BMP"}  # no EXIF/ICC in BMP
    elif exif:  # libtiff (used for compression) cannot write the EXIF sub-IFD; Pillow's own writer can
        kw.update(format="TIFF", compression=None)
    else:
        kw.update(format="TIFF", compression="tiff_deflate")
    im.save(fh, **kw)


def write_photo(
    path: str | os.PathLike,
    photo: Photo | np.ndarray,
    *,
    bit_depth: int | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write a photo atomically; the format follows the suffix (.jpg .jpeg .png .tif .tiff .webp, any case).

    ``photo``: a :class:`Photo` (EXIF, ICC and alpha carried over) or a bare array: float (H, W[, 3|4]) sRGB
    in [0, 1] (written 8-bit unless ``bit_depth``), uint8 or uint16 (written at its own depth).
    ``bit_depth``: 8 or 16; default the photo's own. JPEG and WebP are always 8-bit (their codecs have no
    16-bit mode); alpha is dropped for JPEG. ``quality`` (1-100) is used by JPEG and WebP (4:4:4 chroma for
    JPEG at 90 and above). Metadata kept: EXIF and ICC for every format and depth, except EXIF for 16-bit TIFF (camera and exposure tags only)
    and ICC profiles that are not RGB (see the module docstring). Parent folders are created.
    Raises :class:`PhotoError` for an unsupported suffix, an existing file without ``overwrite``, or a write
    failure; nothing is left behind on failure. Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise PhotoError(f"{path}: unsupported output format {path.suffix or '(no suffix)'}; "
                         f"use one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}")
    if bit_depth not in (None, 8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    photo = as_photo(photo)
    if path.is_dir():
        raise PhotoError(f"{path}: is a directory")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise PhotoError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
    depth = 8 if suffix in _EIGHT_BIT_ONLY else int(bit_depth or photo.bit_depth)
    with_alpha = photo.alpha is not None and suffix in _ALPHA_OK
    rgbx = False
    if photo.codes is not None and depth == 8 and not with_alpha:
        arr = photo.codes  # what from_float makes of its pixels, without converting them
    else:
        arr = np.asarray(photo.pixels)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"Photo.pixels must be (H, W, 3), got shape {arr.shape}")
        if with_alpha:
            arr = np.concatenate([arr, np.asarray(photo.alpha, dtype=np.float32)[..., None]], axis=2)
        if suffix in (".jpg", ".jpeg"):  # 8-bit RGB: quantised into a buffer Pillow encodes without copying it
            rgbx, arr = True, to_rgbx(arr)
        else:
            arr = np.ascontiguousarray(from_float(arr, depth))
    icc = _rgb_icc(photo.icc_profile)
    exif = photo.exif or None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PhotoError(f"{path.parent}: cannot create folder ({blocked_by(path.parent) or exc.strerror})") from None
    # a hidden temporary name (skipped by iter_photo_paths; stale ones removed by later runs), see atomic.py
    try:
        atomic_write(path, lambda fh: _encode(fh, suffix, arr, exif, icc, depth, quality, rgbx), overwrite=overwrite)
    except FileExistsError:
        raise PhotoError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)") from None
    except OSError as exc:
        raise PhotoError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except (PhotoError, MemoryError):
        raise
    except Exception as exc:
        raise PhotoError(f"{path}: cannot write ({type(exc).__name__}: {exc})") from None
    return path


# ----------------------------------------------------------------------------------------------- listing


def iter_photo_paths(inputs: Iterable[str | os.PathLike] | str | os.PathLike, *,
                     recursive: bool = False, exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Expand files and folders to photo paths, in input order, without duplicates.

    A file is kept as given, whatever its suffix (so that reading it reports what is wrong); a folder contributes
    its files with a supported or RAW suffix (case-insensitive; hidden files and folders skipped; sorted by path),
    descending into sub-folders when ``recursive`` but not into the folders in ``exclude`` (e.g. the output
    folder, when it lies inside the input tree). A single path may be passed instead of a list.
    A missing path raises :class:`PhotoError`.
    """
    skip = [Path(os.path.realpath(e)) for e in exclude]
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(
                f for f in it
                if (f.suffix.lower() in SUPPORTED_EXTENSIONS or f.suffix.lower() in RAW_EXTENSIONS)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and f.is_file()
                and not (skip and _inside(f, skip))
            )
        elif p.exists() or p.is_symlink():
            found = [p]
        else:
            raise PhotoError(f"{p}: no such file or folder")
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def _inside(f: Path, folders: list[Path]) -> bool:
    real = Path(os.path.realpath(f))
    return any(real.is_relative_to(d) for d in folders)
