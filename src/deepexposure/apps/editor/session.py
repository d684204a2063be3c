"""One editing session: a photo, its recipe, a screen-size preview, and a full-resolution save.

No web framework here (see :mod:`deepexposure.apps.editor.app` for the HTTP side): the session validates what a page
sends, renders previews and writes outputs, so it can be tested and benchmarked directly.

The preview is the photo area-reduced to :data:`PREVIEW_LONG_EDGE` (a RAW keeps its unclipped linear data, reduced
too) and rendered by the same code as ``render --recipe`` (:func:`deepexposure.image.raw.render_photo`). The EVs the page
sends are the recipe's EVs before ``strength``; the recipe that is saved holds the EVs actually applied (times the
strength), as ``enhance`` and ``render`` write them, so ``render PHOTO --recipe SAVED`` reproduces the saved photo
and ``edit PHOTO --recipe SAVED`` reopens it (with strength 1).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepexposure.apps.batch import recipe_path_for
from deepexposure.apps.pipeline import LABEL_AGREEMENT, recipe_matches, with_look
from deepexposure.atomic import blocked_by
from deepexposure.errors import DataError, DeepExposureError
from deepexposure.image.io import SUPPORTED_EXTENSIONS, Photo, from_float, write_photo
from deepexposure.image.look import LOOKS, scaled_style_dict
from deepexposure.image.raw import RawPhoto, render_photo
from deepexposure.image.recipe import MAX_ABS_EV, Recipe
from deepexposure.image.render import RENDERERS
from deepexposure.image.segmentation import overlay, reduce_long_edge

__all__ = ["EditorError", "OutputExists", "EditSession", "PreviewImage", "PREVIEW_LONG_EDGE", "DRAFT_LONG_EDGE",
           "HISTOGRAM_BINS", "recipe_matches", "LABEL_AGREEMENT"]

#: Long edge (pixels) of the preview the page shows.
PREVIEW_LONG_EDGE = 1024
#: Long edge of a *draft* preview (sent while a slider is being dragged) for the renderers that fuse exposures
#: (fusion, balanced: about 0.3 s at 1024 px on 2 cores); it is rendered at this size and enlarged.
DRAFT_LONG_EDGE = 512
_SLOW_RENDERERS = ("fusion", "balanced")
#: Bins of the luminance histogram (Rec. 709 luma of the shown 8-bit sRGB image, 0-255).
HISTOGRAM_BINS = 64
_JPEG_QUALITY = 88
_OVERLAY_TINT = 0.2  # weight of the segment colours over the edit in the "segments" view
_NAME_RE = re.compile(r"^[^/\\\x00-\x1f]{1,200}$")
# Names Windows cannot hold (or maps to devices or streams): refused everywhere, so a page behaves the same on
# every system. Reserved device names count with any suffix (CON.jpg is the console).
_WINDOWS_BAD = re.compile(r'[<>:"|?*]|[. ]$')
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
#: Longest file name in bytes (UTF-8) most file systems accept.
NAME_MAX_BYTES = 255


class EditorError(DeepExposureError):
    """A request the editor refuses (bad values, an unsafe output name); one-line message."""


class OutputExists(EditorError):
    """Saving would replace existing files (``names``); the page asks before saving with ``overwrite``."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"{' and '.join(names)} already exist{'s' if len(names) == 1 else ''}")
        self.names = names


@dataclass
class PreviewImage:
    """A rendered preview: ``jpeg`` bytes, the luminance ``histogram`` (:data:`HISTOGRAM_BINS` counts), the share of
    pixels with a channel at 255 (``clipped``), and the render time in ms (``render_ms``, encoding excluded)."""

    jpeg: bytes
    histogram: list[int]
    clipped: float
    render_ms: float


def _resize(img: np.ndarray, long_edge: int) -> np.ndarray:
    return np.ascontiguousarray(reduce_long_edge(img, long_edge), dtype=np.float32)


def _reduced(photo: Photo, long_edge: int) -> Photo:
    """The photo area-reduced to ``long_edge`` (a RAW's linear data with it); metadata dropped."""
    if isinstance(photo, RawPhoto) and photo.scene is not None:
        return RawPhoto(pixels=_resize(photo.pixels, long_edge), bit_depth=16, scene=_resize(photo.scene, long_edge),
                        ev_offset=photo.ev_offset)
    return Photo(pixels=_resize(photo.pixels, long_edge), bit_depth=photo.bit_depth)


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` exist and are one file (a hard link, or another spelling of the name on a
    case-insensitive file system, where resolve() keeps the spelling given)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _number(value, message: str) -> float:
    """``value`` as a float, or :class:`EditorError` (``message``) for a non-number (a string, a bool, null, a list)
    or an integer too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise EditorError(f"{message}, got {'null' if value is None else type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise EditorError(f"{message}, got an integer too large for a number") from None


class EditSession:
    """The state behind one ``deepexposure edit`` page.

    ``photo``: the photo being edited (any :func:`deepexposure.image.io.read_photo` result, RAW included). ``recipe``: the
    seed (the policy's, or a saved one; checked against the photo by the caller, see :func:`recipe_matches`).
    ``out_dir``: the only folder outputs are written to. ``source``: the photo's path (never written).
    """

    def __init__(self, photo: Photo, recipe: Recipe, *, out_dir: str | os.PathLike, source: str | os.PathLike,
                 recipe_source: str | os.PathLike | None = None, preview_long_edge: int = PREVIEW_LONG_EDGE) -> None:
        self.photo = photo
        self.seed = recipe
        self.source = Path(source)
        self.recipe_source = Path(recipe_source) if recipe_source else None
        self.out_dir = Path(out_dir)
        self.preview = _reduced(photo, preview_long_edge)
        self.draft = _reduced(photo, DRAFT_LONG_EDGE)
        self._lock = threading.Lock()  # one render or save at a time: the page sends one request after the other
        self._before: PreviewImage | None = None
        if recipe.renderer not in self.renderers():
            raise EditorError(f"the {recipe.renderer} renderer needs segment labels and this recipe has none; use "
                              f"--renderer {' or '.join(self.renderers())}")

    # --------------------------------------------------------------------------------------------- state

    @property
    def n_segments(self) -> int:
        return len(self.seed.evs)

    def renderers(self) -> list[str]:
        """Renderers this recipe can use: all with segment labels; without them fusion (and local/rolloff for
        one EV)."""
        if self.seed.labels is not None:
            return list(RENDERERS)
        return ["fusion", "local", "rolloff"] if self.n_segments == 1 else ["fusion"]

    def default_output(self) -> str:
        """Default output name: ``<stem>.edit<suffix>`` (a RAW, or another unwritable suffix, becomes .jpg)."""
        suffix = self.source.suffix.lower() if self.source.suffix.lower() in SUPPORTED_EXTENSIONS else ".jpg"
        return f"{self.source.stem}.edit{suffix}"

    def state(self) -> dict:
        """What the page needs to draw itself (JSON-able)."""
        h, w = self.photo.pixels.shape[:2]
        ph, pw = self.preview.pixels.shape[:2]
        return {
            "photo": self.source.name, "size": [w, h], "preview_size": [pw, ph],
            "raw": isinstance(self.photo, RawPhoto), "recipe_file": self.recipe_source.name if self.recipe_source else None,
            "evs": list(self.seed.evs), "renderer": self.seed.renderer, "model": self.seed.model,
            "segments": self.seed.labels is not None, "renderers": self.renderers(), "max_abs_ev": MAX_ABS_EV,
            "out_dir": str(self.out_dir), "output": self.default_output(),
            "histogram_bins": HISTOGRAM_BINS, "look": self.seed.look, "looks": self.looks(),
        }

    def looks(self) -> list[str]:
        """Looks the page can switch between: the built-in ones and the seed recipe's own (a user's look)."""
        return list(dict.fromkeys([*LOOKS, self.seed.look]))

    def _style_of(self, look: str | None) -> tuple[str, dict | None]:
        """(name, style dict) of ``look`` for this edit: the seed's own for None or the seed's look; another look's
        style stage (bracket, contrast, saturation: its EV share and offset belong to a model's EVs, and the
        sliders hold the EVs) for the other built-in looks."""
        if look is None or look == self.seed.look:
            return self.seed.look, self.seed.style
        if not isinstance(look, str) or look not in self.looks():
            raise EditorError(f"look must be one of {', '.join(self.looks())}, got {json.dumps(look)[:40]}")
        r = with_look(dataclasses.replace(self.seed, style=None), look)
        return r.look, r.style

    # --------------------------------------------------------------------------------------------- checks

    def recipe_for(self, evs: Sequence[float], strength: float, renderer: str, look: str | None = None) -> Recipe:
        """The recipe the page's values stand for (EVs times ``strength``, in ``look``: None = the seed's), or
        :class:`EditorError`."""
        if renderer not in self.renderers():
            raise EditorError(f"renderer {renderer!r} is not available for this recipe "
                              f"(choose from {', '.join(self.renderers())})")
        s = _number(strength, "strength must be a number from 0 to 1")
        if not isinstance(evs, (list, tuple)) and not (isinstance(evs, np.ndarray) and evs.ndim == 1):
            raise EditorError("EVs must be a list of numbers, one per segment")
        values = [_number(e, f"EVs must be numbers from -{MAX_ABS_EV:g} to {MAX_ABS_EV:g} stops") for e in evs]
        if not (math.isfinite(s) and 0.0 <= s <= 1.0):
            raise EditorError(f"strength must be from 0 to 1, got {strength}")
        if len(values) != self.n_segments:
            raise EditorError(f"expected {self.n_segments} EVs (one per segment), got {len(values)}")
        if not all(math.isfinite(e) and abs(e) <= MAX_ABS_EV for e in values):
            raise EditorError(f"EVs must be numbers from -{MAX_ABS_EV:g} to {MAX_ABS_EV:g} stops")
        model = self.seed.model if values == list(self.seed.evs) else "manual"
        name, style = self._style_of(look)
        try:
            return dataclasses.replace(self.seed, evs=[round(e * s, 6) for e in values], renderer=renderer,
                                       model=model, style=scaled_style_dict(style, s), look=name)
        except DataError as exc:
            raise EditorError(str(exc)) from None

    def output_paths(self, name: str) -> tuple[Path, Path]:
        """(photo, recipe) paths for an output file name typed in the page: a bare name in :attr:`out_dir` with a
        supported suffix; anything else (a path, '..', a hidden name, the photo being edited) is refused."""
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", "..") or name.startswith("."):
            raise EditorError("give a plain file name (no folder, not hidden), e.g. photo.edit.jpg")
        if _WINDOWS_BAD.search(name) or name.split(".")[0].lower() in _WINDOWS_DEVICES:
            raise EditorError(f"{name!r}: not a portable file name (no < > : \" | ? *, no trailing dot or space, not a "
                              "device name such as CON or NUL)")
        if Path(name).suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise EditorError(f"{name}: unsupported output format; use one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}")
        dst = self.out_dir / name
        rec = recipe_path_for(dst)
        longest = max(len(os.fsencode(p.name)) for p in (dst, rec))
        if longest > NAME_MAX_BYTES:
            raise EditorError(f"the name is too long: {rec.name if len(os.fsencode(rec.name)) == longest else name} "
                              f"would be {longest} bytes (at most {NAME_MAX_BYTES})")
        if dst.parent.resolve() != self.out_dir.resolve():
            raise EditorError("the output must go into the editor's output folder")
        for p in (dst, rec):
            if p.resolve() == self.source.resolve() or _same_file(p, self.source):
                raise EditorError(f"{p.name} is the photo being edited: choose another name")
        return dst, rec

    # --------------------------------------------------------------------------------------------- rendering

    def _encode(self, srgb: np.ndarray, t0: float, shown: np.ndarray | None = None) -> PreviewImage:
        """JPEG of ``shown`` (default ``srgb``, float sRGB or uint8), histogram and clipping of ``srgb``."""
        ms = (time.perf_counter() - t0) * 1000
        u8 = from_float(srgb, 8)
        luma = (u8[..., 0] * 0.2126 + u8[..., 1] * 0.7152 + u8[..., 2] * 0.0722).astype(np.uint8)
        hist = np.bincount(luma.ravel() // (256 // HISTOGRAM_BINS), minlength=HISTOGRAM_BINS)
        clipped = float((u8.max(axis=2) == 255).mean())
        if shown is not None:
            u8 = shown
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise EditorError("could not encode the preview")
        return PreviewImage(jpeg=buf.tobytes(), histogram=[int(c) for c in hist], clipped=clipped, render_ms=ms)

    def render_srgb(self, evs: Sequence[float], strength: float, renderer: str, *, draft: bool = False,
                    look: str | None = None) -> np.ndarray:
        """The preview rendering (float32 sRGB, preview size) of the page's values. ``draft``: the fusing renderers
        (and a look with a bracket) render at :data:`DRAFT_LONG_EDGE` and are enlarged (while a slider moves)."""
        recipe = self.recipe_for(evs, strength, renderer, look)
        with self._lock:
            if draft and (renderer in _SLOW_RENDERERS or (recipe.style or {}).get("bracket")):
                small = render_photo(self.draft, recipe)
                h, w = self.preview.pixels.shape[:2]
                return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            return render_photo(self.preview, recipe)

    def render_preview(self, evs: Sequence[float], strength: float, renderer: str, *, view: str = "after",
                       draft: bool = False, look: str | None = None) -> PreviewImage:
        """``view``: "after" (the edit), "before" (the photo as read: a RAW's default rendering) or "segments" (the
        edit with the segments drawn over it, numbered as the sliders; histogram and clipping stay the edit's)."""
        t0 = time.perf_counter()
        if view == "before":
            self.recipe_for(evs, strength, renderer, look)  # same checks whatever the view
            if self._before is None:
                self._before = self._encode(self.preview.pixels, t0)
            return self._before
        if view not in ("after", "segments"):
            raise EditorError(f"unknown view {view!r}")
        if view == "segments" and self.seed.labels is None:
            raise EditorError("this recipe has no segments (made with --ev and the fusion renderer)")
        out = self.render_srgb(evs, strength, renderer, draft=draft, look=look)
        shown = overlay(out, self.seed.labels, tint=_OVERLAY_TINT) if view == "segments" else None
        return self._encode(out, t0, shown)  # the histogram is the edit's, also under the segments

    # --------------------------------------------------------------------------------------------- saving

    def save(self, evs: Sequence[float], strength: float, renderer: str, name: str, *,
             overwrite: bool = False, look: str | None = None) -> tuple[Path, Path]:
        """Render at full resolution and write the photo, then its recipe (each atomically). Without
        ``overwrite`` nothing is written when either exists (:class:`OutputExists` naming them). Returns the paths."""
        recipe = self.recipe_for(evs, strength, renderer, look)
        dst, rec = self.output_paths(name)
        blocked = blocked_by(self.out_dir)
        if blocked:
            raise EditorError(f"cannot save into {self.out_dir}: {blocked}")
        with self._lock:  # checked and written under the lock: two saves of one name never both pass the check
            existing = [p.name for p in (dst, rec) if p.exists() or p.is_symlink()]
            if existing and not overwrite:
                raise OutputExists(existing)
            pixels = render_photo(self.photo, recipe)
            out = dataclasses.replace(self.photo, pixels=pixels)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            had_photo = dst.exists()
            write_photo(dst, out, overwrite=overwrite)
            try:
                recipe.save(rec, overwrite=overwrite)
            except BaseException:
                if not had_photo:  # never leave a photo without its recipe (a replaced one cannot come back)
                    dst.unlink(missing_ok=True)
                raise
        return dst, rec
