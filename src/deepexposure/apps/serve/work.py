"""What ``deepexposure serve`` does with one photo, without web code: check the options, decode the upload (pixel
limit from the header first), enhance / make the recipe / render, encode the answer.

Runs on the pool's threads. An upload is written to a private temporary folder (``read_photo`` reads files; the
folder, mode 0700, is removed when the job ends, also on failure), and the answer is encoded by ``write_photo``
there too, so the service's bytes are exactly what ``deepexposure enhance`` writes. Error messages name the
photo ``upload``, never the temporary path.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path

from deepexposure.apps.pipeline import check_recipe_fits
from deepexposure.errors import DataError, DeepExposureError, PhotoError, PixelLimitError
from deepexposure.image.io import read_photo, write_photo
from deepexposure.image.look import load_look
from deepexposure.image.raw import enhance_photo, render_photo
from deepexposure.image.recipe import Recipe
from deepexposure.image.render import RENDERERS

__all__ = ["CONTENT_TYPES", "FORMATS", "ENHANCE_OPTIONS", "RECIPE_OPTIONS", "RENDER_OPTIONS", "BadRequest",
           "Options", "Photos", "Unprocessable", "UnsupportedType", "parse_options", "parse_recipe", "sniff_format"]

#: Content types of the photos accepted (raw bodies, or a multipart ``file`` part).
CONTENT_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/tiff": "tif",
                 "image/bmp": "bmp", "image/x-ms-bmp": "bmp"}
#: Output formats: name -> (suffix written, content type).
FORMATS = {"jpg": (".jpg", "image/jpeg"), "jpeg": (".jpg", "image/jpeg"), "png": (".png", "image/png"),
           "webp": (".webp", "image/webp"), "tif": (".tif", "image/tiff"), "tiff": (".tif", "image/tiff")}
ENHANCE_OPTIONS = ("look", "renderer", "strength", "format", "quality")
RECIPE_OPTIONS = ("look", "renderer", "strength")
RENDER_OPTIONS = ("renderer", "strength", "format", "quality")
MAX_RECIPE_BYTES = 1 << 20  # a recipe JSON (64x64 labels run-length coded: a few KiB)
_MAX_DEPTH = 32  # nesting of a recipe JSON


class BadRequest(DeepExposureError):
    """An option or field the request got wrong: 400."""

    status = 400


class UnsupportedType(DeepExposureError):
    """A body that is not one of the photo types (or multipart): 415."""

    status = 415


class Unprocessable(DeepExposureError):
    """A well-formed request whose photo cannot be processed (corrupt, truncated, recipe of another photo): 422."""

    status = 422


@dataclasses.dataclass(frozen=True)
class Options:
    """A request's options (None: the server's default)."""

    look: str | None = None
    renderer: str | None = None
    strength: float = 1.0
    format: str | None = None
    quality: int = 95


def _shown(value: str) -> str:
    return json.dumps(value[:40] + ("..." if len(value) > 40 else ""))


def parse_options(fields: Mapping[str, str], allowed: tuple[str, ...], looks: tuple[str, ...]) -> Options:
    """The :class:`Options` of a request's query and form fields; :class:`BadRequest` (one line) for an unknown
    name or a bad value."""
    for name in fields:
        if name not in allowed:
            raise BadRequest(f"unknown option {_shown(name)} here (expected: {', '.join(allowed)})")
    kw: dict = {}
    if "look" in fields:
        if fields["look"] not in looks:
            raise BadRequest(f"look must be one of {', '.join(looks)}, got {_shown(fields['look'])}")
        kw["look"] = fields["look"]
    if "renderer" in fields:
        if fields["renderer"] not in RENDERERS:
            raise BadRequest(f"renderer must be one of {', '.join(RENDERERS)}, got {_shown(fields['renderer'])}")
        kw["renderer"] = fields["renderer"]
    if "strength" in fields:
        try:
            strength = float(fields["strength"])
        except ValueError:
            strength = math.nan
        if not (math.isfinite(strength) and 0.0 <= strength <= 1.0):
            raise BadRequest(f"strength must be a number from 0 to 1, got {_shown(fields['strength'])}")
        kw["strength"] = strength
    if "format" in fields:
        fmt = fields["format"].lower()
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of jpg, png, webp, tif, got {_shown(fields['format'])}")
        kw["format"] = fmt
    if "quality" in fields:
        q = fields["quality"]
        if not (q.isascii() and q.isdigit() and 1 <= int(q) <= 100):
            raise BadRequest(f"quality must be a whole number from 1 to 100, got {_shown(q)}")
        kw["quality"] = int(q)
    return Options(**kw)


def _depth(x, limit: int, level: int = 0) -> int:
    if level > limit:
        return level
    if isinstance(x, dict):
        return max((_depth(v, limit, level + 1) for v in x.values()), default=level)
    if isinstance(x, list):
        return max((_depth(v, limit, level + 1) for v in x), default=level)
    return level


def parse_recipe(text: bytes | str) -> Recipe:
    """A recipe JSON from a request: :class:`BadRequest` (one line) when it is not one."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise BadRequest("the recipe is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the recipe is not valid JSON") from None
    if _depth(data, _MAX_DEPTH) > _MAX_DEPTH:
        raise BadRequest("the recipe is nested too deeply")
    try:
        return Recipe.from_dict(data)
    except DataError as exc:
        raise BadRequest(f"bad recipe: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"bad recipe: {exc}") from None


def sniff_format(data: bytes) -> str:
    """The output format matching the upload's own (by its first bytes): png, webp or tif; else jpg."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    return "jpg"


class Photos:
    """The per-photo work with one loaded model: ``enhance``, ``recipe``, ``render`` (thread-safe: each call makes
    its own shallow copy of the enhancer, sharing the loaded model).

    ``model``, ``look``: as :class:`~deepexposure.inference.enhance.Enhancer` takes them (the server's defaults; a
    request may ask for ``natural``, ``expert`` or the server's own look by name, never a file).
    ``max_pixels``: uploads above it are refused from their header, before decoding.
    """

    def __init__(self, model: str | None = None, look: str | None = None, *, max_pixels: int) -> None:
        from deepexposure.inference.enhance import Enhancer

        self.enhancer = Enhancer(model, look=look or "natural")
        self.looks = {name: load_look(name) for name in ("natural", "expert")}
        self.looks[self.enhancer.look.name] = self.enhancer.look
        self.max_pixels = max_pixels
        self._default_renderer = self.enhancer.renderer

    @property
    def look_names(self) -> tuple[str, ...]:
        return tuple(self.looks)

    def _enhancer(self, opts: Options):
        e = copy.copy(self.enhancer)
        e.look = self.looks[opts.look] if opts.look else self.enhancer.look
        e.renderer = opts.renderer or self._default_renderer
        e.strength = float(opts.strength)
        return e

    def _read(self, data: bytes, folder: Path):
        src = folder / "upload"
        src.write_bytes(data)
        try:
            return read_photo(src, max_pixels=self.max_pixels, max_pixels_why="the server's --max-pixels")
        except PixelLimitError as exc:
            raise PixelLimitError(str(exc).replace(str(src), "upload").replace(
                "; raise --max-pixels / max_pixels if this photo is trusted and fits in memory", "")) from None
        except PhotoError as exc:
            raise Unprocessable(str(exc).replace(str(src), "upload")) from None

    @staticmethod
    def _encode(photo, data: bytes, opts: Options, folder: Path) -> tuple[bytes, str]:
        suffix, media = FORMATS[opts.format or sniff_format(data)]
        dst = folder / f"answer{suffix}"
        write_photo(dst, photo, quality=opts.quality, overwrite=True)
        return dst.read_bytes(), media

    def enhance(self, data: bytes, opts: Options) -> tuple[bytes, str, Recipe]:
        """The enhanced photo (encoded), its content type, and the recipe applied."""
        with tempfile.TemporaryDirectory(prefix="deepexposure-serve-") as tmp:
            photo = self._read(data, Path(tmp))
            out, recipe = enhance_photo(self._enhancer(opts), photo)
            body, media = self._encode(out, data, opts, Path(tmp))
        return body, media, recipe

    def recipe(self, data: bytes, opts: Options) -> Recipe:
        """The recipe the model makes for the photo (what ``enhance`` would apply)."""
        with tempfile.TemporaryDirectory(prefix="deepexposure-serve-") as tmp:
            photo = self._read(data, Path(tmp))
        return self._enhancer(opts).recipe(photo.pixels)

    def render(self, data: bytes, recipe: Recipe, opts: Options) -> tuple[bytes, str, Recipe]:
        """The photo rendered with ``recipe`` (which must have been made for it: :class:`Unprocessable` otherwise)."""
        with tempfile.TemporaryDirectory(prefix="deepexposure-serve-") as tmp:
            photo = self._read(data, Path(tmp))
            try:
                check_recipe_fits(recipe, photo, "recipe", "this photo")
            except DataError as exc:
                raise Unprocessable(str(exc)) from None
            try:
                pixels = render_photo(photo, recipe, renderer=opts.renderer, strength=opts.strength)
            except DataError as exc:  # e.g. a renderer that needs the segment labels the recipe lacks
                raise Unprocessable(str(exc)) from None
            used = dataclasses.replace(recipe, renderer=opts.renderer or recipe.renderer,
                                       evs=[e * opts.strength for e in recipe.evs])
            body, media = self._encode(dataclasses.replace(photo, pixels=pixels), data, opts, Path(tmp))
        return body, media, used
