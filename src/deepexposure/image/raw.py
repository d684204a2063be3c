"""Camera RAW input through rawpy (LibRaw): DNG and the common camera formats (``io.RAW_EXTENSIONS``).

How a RAW file becomes a photo (:func:`read_raw`, called by :func:`deepexposure.image.io.read_photo`):

1. LibRaw demosaics (AHD) to **linear** light, 16 bits, sRGB primaries, the camera's white balance (daylight when
   the file has none), no automatic brightening (``gamma=(1, 1)``, ``no_auto_bright``), highlight mode *blend*.
   With *blend* LibRaw scales the channels by the white balance divided by its **largest** multiplier, so no
   channel clips: red or blue values above the green sensor white are kept (with the default *clip* mode they
   are cut at the green white, the usual source of blown, colourless highlights in a default conversion).
2. :attr:`RawPhoto.scene` holds that decode, sRGB-encoded, float32 in [0, 1]: nothing clipped.
   :attr:`RawPhoto.ev_offset` = log2(largest / smallest multiplier) is the exposure that puts the sensor's
   white (a neutral tone at the camera's white level) on white: exactly LibRaw's default (*clip*) scaling, which
   is checked in the tests.
3. **The default rendering** (``Photo.pixels``, what ``segment`` draws on, what the policy sees through its 64x64
   preview, and the editor's "before") is the RAW *as shot*: ``scene`` exposed by ``ev_offset`` in linear light,
   hard clip at white, sRGB tone curve. No automatic exposure is applied: the policy's EVs carry all of the
   exposure change, relative to the photographer's own.
4. **Rendering a recipe** (:func:`render_photo`): every EV is applied to ``scene`` in linear light, added to
   ``ev_offset``, by the chosen renderer, before the tone curve. So a negative EV brings back the highlights that
   the default rendering (and any 8-bit rendering of it) clips, up to the sensor's own clipping; the ``rolloff``
   renderer maps the RAW's own bright end (its 99.5th percentile) to white, so it holds those highlights by
   itself. ``fusion`` fuses the default rendering with the RAW exposed by each EV (as for a JPEG, whose
   "original" is the photo).

Metadata: the output's EXIF gets the camera make and model, the capture date, exposure time, f-number, ISO and
focal length (from the RAW's own TIFF/EXIF tags, else from the JPEG preview LibRaw finds inside, else LibRaw's
values), orientation 1 (the pixels are upright: LibRaw applies the file's orientation, ``sizes.flip``).
``rawpy`` is the optional extra ``raw`` (``pip install 'deepexposure[raw]'``); without it reading a RAW file
is one :class:`~deepexposure.errors.PhotoError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from deepexposure.errors import PhotoError
from deepexposure.image.color import apply_ev, linear_to_srgb
from deepexposure.image.photo import (
    DEFAULT_MAX_PIXELS,
    RAW_EXTENSIONS,
    Photo,
    check_readable,
    from_float,
    too_big,
)
from deepexposure.image.recipe import MAX_ABS_EV, Recipe
from deepexposure.image.render import BALANCED_BRACKET, recipe_evs, render, render_balanced

__all__ = ["RAW_EXTENSIONS", "RAW_EXTRA_HINT", "RawPhoto", "is_raw", "read_raw", "render_photo", "enhance_photo",
           "expose"]

#: How to get RAW support, quoted by the error when rawpy is missing.
RAW_EXTRA_HINT = "reading camera RAW files needs rawpy (LibRaw): pip install 'deepexposure[raw]'"

_CODES16 = np.arange(65536, dtype=np.float32) / np.float32(65535)
#: Up to this many pixels the fusion renderer makes the RAW's exposures once and keeps them (6 bytes/pixel each);
#: above, it makes them again for its second pass instead of holding them all.
_MATERIALISE_PIXELS = 2_000_000
# EXIF tags carried from the RAW (IFD0 and the EXIF sub-IFD); everything else (maker notes, the RAW's own strip
# layout, thumbnails) is left out.
_IFD0_TAGS = (271, 272, 306, 315, 33432)  # Make, Model, DateTime, Artist, Copyright
_EXIF_IFD = 0x8769
_EXIF_TAGS = (33434, 33437, 34850, 34855, 36867, 36868, 37380, 37383, 37385, 37386, 41989, 42035, 42036)
# ExposureTime, FNumber, ExposureProgram, ISO, DateTimeOriginal, DateTimeDigitized, ExposureBias, MeteringMode,
# Flash, FocalLength, FocalLengthIn35mm, LensMake, LensModel


@dataclass
class RawPhoto(Photo):
    """A decoded camera RAW file: ``pixels`` is the default rendering (module doc), 16-bit.

    ``scene``: float32 (H, W, 3) sRGB-encoded linear decode in [0, 1], nothing clipped (module doc, step 2).
    ``ev_offset``: EV stops from ``scene`` to the default rendering (sensor white on white), >= 0.
    """

    scene: np.ndarray | None = None
    ev_offset: float = 0.0


def is_raw(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a camera RAW suffix (:data:`~deepexposure.image.io.RAW_EXTENSIONS`, any case)."""
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def _import_rawpy(path: Path):
    try:
        import rawpy
    except ImportError:
        raise PhotoError(f"{path}: {RAW_EXTRA_HINT}") from None
    return rawpy


@contextlib.contextmanager
def _libraw_messages():
    """Capture what LibRaw prints on the C stderr (e.g. "Unexpected end of file") during the block, so that a
    bad file gives our one-line error, not a stray line. Yields a callable returning the captured text."""
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): leave stderr alone
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: " ".join(captured)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(4000).decode("utf-8", "replace")
            captured.extend(ln.split(": ", 1)[-1].strip() for ln in text.splitlines() if ln.strip())


def _white_balance(raw) -> list[float]:
    """The multipliers handed to LibRaw: the camera's (as shot), else LibRaw's daylight ones, else none (1s).
    Four values (R, G, B, G2), G2 = G where LibRaw gives 0."""
    for wb in (raw.camera_whitebalance, raw.daylight_whitebalance):
        w = [float(v) for v in wb]
        if len(w) >= 3 and all(math.isfinite(v) and v > 0 for v in w[:3]):
            w = (w + [0.0])[:4]
            if not (math.isfinite(w[3]) and w[3] > 0):
                w[3] = w[1]
            return w
    return [1.0, 1.0, 1.0, 1.0]


def expose(scene: np.ndarray, ev: float) -> np.ndarray:
    """``scene`` (float32 sRGB [0, 1]) exposed by ``ev`` stops in linear light, hard clip at white -> float32 sRGB.
    (The ``local`` renderer with one EV and no segments: ``color.apply_ev``, in fast row chunks.)"""
    ev = float(np.clip(ev, -MAX_ABS_EV, MAX_ABS_EV))
    return render(scene, Recipe(evs=[ev], renderer="local"))


def _rational(x: float, max_den: int = 100_000):
    from PIL.TiffImagePlugin import IFDRational

    f = Fraction(x).limit_denominator(max_den)
    return IFDRational(f.numerator, f.denominator)


def _source_exif(path: Path, raw):
    """The RAW's own EXIF (TIFF-based RAWs: DNG, NEF, CR2, ARW, ...), else that of the JPEG preview inside it
    (e.g. Canon CRW); an empty ``PIL.Image.Exif`` when neither has any."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open(path, "rb") as fh:
                if fh.read(4) in (b"II*\x00", b"MM\x00*"):  # a TIFF structure: its IFD0 and EXIF IFD, no pixels
                    fh.seek(0)
                    ex = Image.Exif()
                    ex.load(fh.read())
                    if 271 in ex or 272 in ex:
                        return ex
        except Exception:  # a header Pillow cannot parse
            pass
        try:
            thumb = raw.extract_thumb()
            if str(thumb.format).endswith("JPEG"):
                with Image.open(io.BytesIO(bytes(thumb.data))) as im:
                    return im.getexif()
        except Exception:  # no preview, or one LibRaw cannot unpack
            pass
    return Image.Exif()


def _raw_exif(path: Path, raw) -> bytes | None:
    """EXIF for the rendered photo: camera, date and exposure settings (module doc), orientation 1."""
    from PIL import Image

    src = _source_exif(path, raw)
    out = Image.Exif()
    for tag in _IFD0_TAGS:
        if src.get(tag) not in (None, ""):
            out[tag] = src[tag]
    try:
        src_ifd = src.get_ifd(_EXIF_IFD)
    except Exception:
        src_ifd = {}
    ifd = out.get_ifd(_EXIF_IFD)
    for tag in _EXIF_TAGS:  # from the EXIF IFD, or from IFD0 where TIFF/EP (and so some DNGs) puts them
        value = src_ifd.get(tag, src.get(tag))
        if value not in (None, ""):
            ifd[tag] = value
    other = raw.other  # LibRaw's own reading of the capture settings fills what the tags lack
    if 33434 not in ifd and other.shutter_speed > 0:
        ifd[33434] = _rational(other.shutter_speed)
    if 33437 not in ifd and other.aperture > 0:
        ifd[33437] = _rational(other.aperture, 100)
    if 34855 not in ifd and other.iso_speed > 0:
        ifd[34855] = int(round(other.iso_speed))
    if 37386 not in ifd and other.focal_length > 0:
        ifd[37386] = _rational(other.focal_length, 100)
    if 36867 not in ifd and isinstance(other.timestamp, datetime) and other.timestamp.year > 1970:
        ifd[36867] = other.timestamp.strftime("%Y:%m:%d %H:%M:%S")
    out[0x0112] = 1  # the pixels are upright
    try:
        return out.tobytes()
    except Exception:  # a tag Pillow cannot serialise: keep what LibRaw knows only
        return None


def read_raw(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
             max_pixels_why: str | None = None) -> RawPhoto:
    """Decode a camera RAW file (module doc) -> :class:`RawPhoto`, upright, 16-bit.

    Raises :class:`PhotoError` (one line naming the file) when rawpy is missing, the file is not a RAW file LibRaw
    can read, or it has more than ``max_pixels`` pixels (checked before demosaicing).
    """
    path = Path(path)
    check_readable(path)
    rawpy = _import_rawpy(path)
    raw = rawpy.RawPy()
    messages = lambda: ""  # noqa: E731
    try:
        try:
            with _libraw_messages() as messages:
                raw.open_file(os.fspath(path))
                s = raw.sizes
                w, h = int(s.width), int(s.height)
                if w * h > max_pixels:
                    raise too_big(path, w, h, max_pixels, max_pixels_why)
                if w == 0 or h == 0:
                    raise PhotoError(f"{path}: RAW image has no pixels ({w}x{h})")
                raw.unpack()
                wb = _white_balance(raw)
                lin = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, user_wb=wb,
                                      highlight_mode=rawpy.HighlightMode.Blend, output_color=rawpy.ColorSpace.sRGB)
        except rawpy.LibRawFileUnsupportedError:
            raise PhotoError(f"{path}: not a camera RAW file LibRaw can read (unsupported camera or corrupt file)"
                             ) from None
        except rawpy.LibRawIOError:
            why = messages() or "unexpected end of file"
            raise PhotoError(f"{path}: cannot read the RAW data ({why}): truncated, damaged or not a RAW file"
                             ) from None
        except rawpy.LibRawError as exc:
            raise PhotoError(f"{path}: corrupt RAW file ({type(exc).__name__}: {exc})") from None
        exif = _raw_exif(path, raw)
    finally:
        raw.close()
    scene = lin.astype(np.float32)
    del lin
    scene *= np.float32(1 / 65535)
    scene = linear_to_srgb(scene)
    ev_offset = math.log2(max(wb) / min(wb))
    pixels = expose(scene, ev_offset)
    return RawPhoto(pixels=pixels, alpha=None, bit_depth=16, exif=exif, icc_profile=None, source=path, mode="RGB",
                    scene=scene, ev_offset=ev_offset)


def render_photo(photo: Photo, recipe: Recipe, *, renderer: str | None = None, strength: float = 1.0) -> np.ndarray:
    """Render a recipe on a photo -> float32 sRGB [0, 1] (H, W, 3): :func:`deepexposure.image.render.render` on
    ``photo.pixels``, or, for a :class:`RawPhoto`, on its unclipped linear data (module doc, step 4).

    ``renderer`` (default ``recipe.renderer``) and ``strength`` (in [0, 1], scales every EV) as in ``render``;
    a RAW with all scaled EVs 0 gives its default rendering.
    """
    if not isinstance(photo, RawPhoto) or photo.scene is None:
        # an 8-bit photo whose float pixels were never read is rendered from its codes (no float copy)
        src = photo.codes if photo.codes is not None else photo.pixels
        return render(src, recipe, renderer=renderer, strength=strength)
    out = _render_raw_exposure(photo, dataclasses.replace(recipe, style=None), renderer, strength)
    from deepexposure.image.look import (
        apply_recipe_style,  # lazily: look imports this module's fusion lazily too
    )

    return apply_recipe_style(out, recipe.style, strength)


def _render_raw_exposure(photo: RawPhoto, recipe: Recipe, renderer: str | None, strength: float) -> np.ndarray:
    """The exposure part of :func:`render_photo` for a RAW (its unclipped linear data)."""
    name, evs = recipe_evs(recipe, renderer, strength)
    if not np.any(evs):
        return np.array(photo.pixels, dtype=np.float32)
    scene, offset = photo.scene, float(photo.ev_offset)
    if name == "fusion":
        from deepexposure.image.fusion import mertens_fuse

        codes = from_float(scene, 16)  # each exposure is then a 65,536-entry table lookup, as in fuse_exposures
        tables = [from_float(apply_ev(_CODES16, offset + e), 16) for e in evs]

        def exposures():  # generated twice by the two-pass fusion, one exposure alive at a time
            yield photo.pixels
            for table in tables:
                yield table[codes]

        if codes.shape[0] * codes.shape[1] <= _MATERIALISE_PIXELS:  # small (e.g. a preview): make each once
            return mertens_fuse(list(exposures()), grey_zero=True)
        return mertens_fuse(exposures, grey_zero=True)
    shifted = dataclasses.replace(recipe, renderer=name,
                                  evs=[float(np.clip(e + offset, -MAX_ABS_EV, MAX_ABS_EV)) for e in evs])
    if name == "balanced":  # the bracket scales with the strength, as in render()
        return render_balanced(scene, shifted.evs, shifted.labels,
                               bracket=[b * float(strength) for b in BALANCED_BRACKET])
    return render(scene, shifted, renderer=name)


def enhance_photo(enhancer, photo: Photo) -> tuple[Photo, Recipe]:
    """``enhancer.enhance_photo(photo)`` (an :class:`~deepexposure.inference.enhance.Enhancer`), RAW-aware: the policy sees
    the default rendering, the EVs are applied to the RAW's linear data (:func:`render_photo`)."""
    if not isinstance(photo, RawPhoto) or photo.scene is None:
        return enhancer.enhance_photo(photo)
    recipe = enhancer.recipe(photo.pixels)
    out = render_photo(photo, recipe, renderer=enhancer.renderer)
    return dataclasses.replace(photo, pixels=out), recipe
