"""Looks: what happens to a photo after its exposure is corrected.

* ``natural`` (the default): nothing more. The exposure model restores the photo as shot (undoes an exposure
  error); a photo that is already well exposed comes back nearly unchanged.
* ``expert``: the natural correction, then a few-parameter :class:`Style` fitted on real expert-retouched pairs
  (MIT-Adobe FiveK, expert C): a share of the natural EV plus an EV offset, an optional Mertens bracket fused around the
  exposed image (shadows lifted, highlights held), a contrast curve and a saturation gain.

The style is applied to float32 sRGB [0, 1] (H, W, 3) images and is pure numpy (no torch). The fitted expert
style ships as ``deepexposure/assets/looks/expert.json``; a user's own look (``fit-look``) is the same file format.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from deepexposure.errors import DataError
from deepexposure.image.color import linear_to_srgb, srgb_to_linear

__all__ = ["Style", "Look", "LOOKS", "DEFAULT_LOOK", "apply_style", "scaled_style", "load_look", "style_grid",
           "MID_GREY", "scaled_style_dict", "apply_recipe_style", "tone", "contrast_lut", "look_name_problem"]

#: The built-in looks; a path to a look file (JSON) is accepted wherever a look name is.
LOOKS = ("natural", "expert")
DEFAULT_LOOK = "natural"
#: Linear mid-grey, the pivot of the contrast curve (18% reflectance).
MID_GREY = 0.18
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 luminance weights (linear light)
_FORMAT = "deepexposure-look"
#: Bounds that a look file must respect (validated on load): EV stops, bracket EVs, contrast power, saturation gain.
LIMITS = {"ev_scale": (0.0, 2.0), "ev_offset": (-3.0, 3.0), "bracket": (-4.0, 4.0), "contrast": (0.5, 2.5), "saturation": (0.0, 2.0)}


#: A look file is a few hundred bytes; anything above this is refused before it is read.
MAX_LOOK_BYTES = 64 * 1024


def _is_number_in(v: object, lo: float, hi: float) -> bool:
    """A real JSON number (not a bool) within [lo, hi]; an integer too large for a float is not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        f = float(v)
    except OverflowError:
        return False
    return math.isfinite(f) and lo <= f <= hi


def look_name_problem(name: object) -> str | None:
    """Why ``name`` is not a look name, or None: a look's name is 1-64 printable characters (no newline, tab or
    terminal escape: it is printed, written in recipes and sent in the service's ``X-Recipe-Look`` header)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        return f"a look's name must be a string of 1-64 characters, got {_short(name)}"
    if not name.isprintable():
        return f"a look's name must be printable characters (no newline, tab or control character), got {_short(name)}"
    return None


def _short(v: object) -> str:
    """``repr(v)`` cut to 40 characters (a hostile value is not echoed whole)."""
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


@dataclass(frozen=True)
class Style:
    """The style stage of a look (identity by default).

    ``ev_scale``: share of the exposure model's EV kept (1: all of it; 0: none, the photo's own exposure).
    ``ev_offset``: stops added to the exposure model's EV after scaling (linear light). ``bracket``: EVs (stops) of copies of the
    exposed image fused with it by Mertens fusion (empty: none). ``contrast``: power ``c`` of the per-channel
    linear curve ``0.18 * (x / 0.18) ** c`` (1: none; > 1 darker shadows, brighter highlights). ``saturation``:
    gain of the sRGB chroma around the pixel's sRGB luma (1: none).
    """

    ev_offset: float = 0.0
    ev_scale: float = 1.0
    bracket: tuple[float, ...] = ()
    contrast: float = 1.0
    saturation: float = 1.0

    def __post_init__(self) -> None:
        for name in ("ev_scale", "ev_offset", "contrast", "saturation"):
            v = getattr(self, name)
            lo, hi = LIMITS[name]
            if not _is_number_in(v, lo, hi):
                raise DataError(f"look style {name} must be a number in [{lo:g}, {hi:g}], got {_short(v)}")
        lo, hi = LIMITS["bracket"]
        if not isinstance(self.bracket, (tuple, list)) or len(self.bracket) > 4 or not all(
                _is_number_in(b, lo, hi) for b in self.bracket):
            raise DataError(f"look style bracket must be at most 4 EVs in [{lo:g}, {hi:g}], got {_short(self.bracket)}")
        object.__setattr__(self, "bracket", tuple(float(b) for b in self.bracket))

    @property
    def is_identity(self) -> bool:
        return self.ev_scale == 1 and self.ev_offset == 0 and not self.bracket and self.contrast == 1 and self.saturation == 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["bracket"] = list(self.bracket)
        return d

    @classmethod
    def from_dict(cls, d: object) -> Style:
        """Inverse of :meth:`to_dict`; unknown keys or bad values raise :class:`DataError`."""
        if not isinstance(d, dict):
            raise DataError("look style must be an object")
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            extra = sorted(map(str, set(d) - known))
            raise DataError(f"unknown look style keys {_short(extra)}; valid: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if k == "bracket" and isinstance(v, list) else v for k, v in d.items()})


@functools.lru_cache(maxsize=32)
def contrast_lut(contrast: float) -> np.ndarray:
    """The contrast curve on the 65,536 16-bit sRGB codes (float32 sRGB [0,1] out; read-only, cached)."""
    codes = np.arange(65536, dtype=np.float32) / np.float32(65535)
    g = np.float32(MID_GREY)
    lin = np.maximum(srgb_to_linear(codes), np.float32(1e-7))
    lut = np.clip(linear_to_srgb(g * np.power(lin / g, np.float32(contrast))), 0.0, 1.0).astype(np.float32)
    lut.setflags(write=False)
    return lut


def tone(srgb: np.ndarray, contrast: float, saturation: float) -> np.ndarray:
    """The contrast curve then the saturation gain of a :class:`Style` on float sRGB [0,1] -> float32 sRGB [0,1].

    The curve is per channel, so it is a table over the 16-bit codes (within 2e-5 of the formula, 14x faster than
    evaluating it per pixel at 12 MP: it runs on every expert-look photo)."""
    x = np.asarray(srgb, dtype=np.float32)
    if (contrast == 1.0 and saturation == 1.0) or x.ndim != 3:
        return _tone_whole(x, contrast, saturation)
    return _tone(x, contrast, saturation, out=np.empty(x.shape, np.float32))


_TONE_ROWS = 32  # rows per block of tone(): its temporaries (16-bit codes, their intp indices) stay in the cache


def _tone(x: np.ndarray, contrast: float, saturation: float, *, out: np.ndarray) -> np.ndarray:
    """:func:`tone` of (H, W, 3) float32 ``x`` into ``out`` (may be ``x``) in blocks of rows: the same arithmetic
    per pixel, without full-size temporaries (at 12 MP the whole-array form spent 1.5 s, mostly in page faults
    and a 288 MB index array)."""
    if x.ndim != 3 or (contrast == 1.0 and saturation == 1.0):
        out[...] = _tone_whole(x, contrast, saturation)
        return out
    for r0 in range(0, x.shape[0], _TONE_ROWS):
        out[r0:r0 + _TONE_ROWS] = _tone_whole(x[r0:r0 + _TONE_ROWS], contrast, saturation)
    return out


def _tone_whole(x: np.ndarray, contrast: float, saturation: float) -> np.ndarray:
    out = x
    if contrast != 1.0:
        t = np.clip(out, 0.0, 1.0)  # codes = round(65535 clip(x)), the same operations in place
        t *= np.float32(65535)
        t += np.float32(0.5)
        out = np.take(contrast_lut(float(contrast)), t.astype(np.uint16))
    if saturation != 1.0:
        y = (out @ _LUMA)[..., None]
        out = out - y if out is x else np.subtract(out, y, out=out)  # y + s (c - y), clipped
        out *= np.float32(saturation)
        out += y
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def apply_style(exposed: np.ndarray | None, style: Style, *, table: tuple[np.ndarray, np.ndarray] | None = None
                ) -> np.ndarray:
    """Apply a style's bracket fusion, contrast and saturation to an already exposed float sRGB [0,1] (H,W,3) image
    (``ev_offset`` belongs to the exposure and is applied by the caller) -> float32 sRGB [0,1].

    ``table``: ``(codes uint8 (H, W, 3), table float32 (256,))`` standing for ``exposed = table[codes]`` (one global
    exposure of an 8-bit photo, ``render.global_table``; ``exposed`` is then not needed): the bracket's exposures
    are tables of the same codes (:func:`~deepexposure.image.fusion.fuse_table_exposures`, the same values)."""
    if style.bracket:
        from deepexposure.image import fusion  # lazily: the fusion module is large

        bracket = [float(e) for e in style.bracket]  # bracket EVs are checked by Style
        c, s = style.contrast, style.saturation

        def post(rows: np.ndarray) -> None:  # toned in place, strip by strip, as the fusion finishes them
            _tone(rows, c, s, out=rows)

        if table is not None:
            return fusion.fuse_table_exposures(table[0], table[1], bracket, post=post)
        return fusion.fuse_exposures(np.asarray(exposed, dtype=np.float32), bracket, post=post)
    if table is not None:
        import cv2

        img = cv2.LUT(table[0], np.asarray(table[1], np.float32))
        return _tone(img, style.contrast, style.saturation, out=img)
    return tone(np.asarray(exposed, dtype=np.float32), style.contrast, style.saturation)


def scaled_style(style: Style, strength: float) -> Style:
    """The style at ``strength`` in [0, 1] (as ``enhance --strength`` scales EVs): bracket EVs times it,
    contrast and saturation moved towards 1 (0 is the identity, 1 the style itself)."""
    s = float(strength)
    if s == 1.0:
        return style
    return Style(style.ev_offset * s, style.ev_scale, tuple(b * s for b in style.bracket) if s > 0 else (),
                 1 + (style.contrast - 1) * s, 1 + (style.saturation - 1) * s)


def scaled_style_dict(style: dict | None, strength: float) -> dict | None:
    """A recipe's ``style`` (a :meth:`Style.to_dict`, or None) at ``strength`` (:func:`scaled_style`)."""
    return None if style is None else scaled_style(Style.from_dict(style), strength).to_dict()


def apply_recipe_style(exposed: np.ndarray | None, style: dict | None, strength: float, *,
                       table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A recipe's ``style`` at ``strength`` applied to its exposed float sRGB [0,1] image (the step after the
    exposure in every renderer; nothing for no style or strength 0). ``table``: as :func:`apply_style`."""
    if style is None or strength <= 0:
        if table is not None:
            import cv2

            return cv2.LUT(table[0], np.asarray(table[1], np.float32))
        return exposed
    return apply_style(exposed, scaled_style(Style.from_dict(style), strength), table=table)


def style_grid(ev_scales: Sequence[float], ev_offsets: Sequence[float], brackets: Sequence[Sequence[float]],
               contrasts: Sequence[float], saturations: Sequence[float]) -> list[Style]:
    """Every combination of the given values (a style search space)."""
    return [Style(e, k, tuple(b), c, s) for k in ev_scales for e in ev_offsets for b in brackets for c in contrasts
            for s in saturations]


@dataclass(frozen=True)
class Look:
    """A named look: its :class:`Style` and where it came from (``provenance``: pairs, fit error, version)."""

    name: str
    style: Style = field(default_factory=Style)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = look_name_problem(self.name)
        if problem:
            raise DataError(problem)

    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, "version": 1, "name": self.name, "style": self.style.to_dict(),
                           "provenance": self.provenance}, indent=1)


def look_path(name: str) -> Path:
    """Path of a built-in look's file inside the package."""
    return Path(str(resources.files("deepexposure") / "assets" / "looks" / f"{name}.json"))


def load_look(look: str | os.PathLike | Look | None) -> Look:
    """A look by name (``natural``, ``expert``), a look file (JSON), or a :class:`Look`; None is ``natural``.
    A bad name or file raises :class:`DataError` naming it."""
    if isinstance(look, Look):
        return look
    if look is None or str(look) == "natural":
        return Look("natural")
    if str(look) in LOOKS:
        path = look_path(str(look))
    else:
        path = Path(look)
        if not path.suffix.lower() == ".json":
            raise DataError(f"unknown look {_short(str(look))}; use {' or '.join(LOOKS)}, or a look file (.json)")
    from deepexposure.atomic import NotASmallFile, read_small

    try:
        d = json.loads(read_small(path, MAX_LOOK_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"look file not found: {path}") from None
    except NotASmallFile as exc:
        why = f"over {MAX_LOOK_BYTES // 1024} KB" if exc.errno == 27 else exc.strerror
        raise DataError(f"{path}: not a look file ({why})") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a look file ({type(exc).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != _FORMAT:
        raise DataError(f"{path}: not a deepexposure look file")
    if type(d.get("version")) is not int or d.get("version") != 1:
        raise DataError(f"{path}: look file version {d.get('version')!r} is not supported (this release reads 1)")
    name = d.get("name")
    problem = look_name_problem(name)
    if problem:
        raise DataError(f"{path}: {problem}")
    prov = d.get("provenance", {})
    if not isinstance(prov, dict):
        raise DataError(f"{path}: provenance must be an object")
    try:
        style = Style.from_dict(d.get("style"))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    return Look(name, style, prov)
