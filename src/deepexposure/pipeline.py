"""File-level jobs: read a photo, compute or load a recipe, render, write (metadata and alpha kept).

These are module-level functions so they can be sent to worker processes by :mod:`deepexposure.batch`.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from deepexposure.batch import Job
from deepexposure.io import DEFAULT_MAX_PIXELS, Photo, read_photo, write_photo
from deepexposure.recipe import Recipe
from deepexposure.render import ENHANCE_RENDERER, render
from deepexposure.segmentation import make_preview, overlay, segment, segmentation_params

__all__ = ["manual_recipe", "render_file", "segment_file", "enhance_file", "recipe_path_for"]


def recipe_path_for(dst: Path) -> Path:
    """Sidecar path of an output photo: ``out/photo.jpg`` -> ``out/photo.recipe.json``."""
    return dst.with_name(dst.stem + ".recipe.json")


def manual_recipe(srgb: np.ndarray, evs: list[float], renderer: str, *, segments: dict | None = None) -> Recipe:
    """A recipe from exposure values given by hand.

    ``fusion``: the EVs are applied to the whole photo and fused with it; no segmentation is needed.
    ``local``: the photo's 64x64 preview is segmented into at most ``len(evs)`` segments (in the order of
    :func:`deepexposure.segmentation.segment`, with ``segments`` over the shipped policy's parameters
    ``SEGMENT_DEFAULTS``) and EV k is applied inside segment k; if fewer segments are found, the extra EVs are
    dropped with a warning.
    """
    if renderer == "fusion":
        return Recipe(evs=[float(e) for e in evs], labels=None, renderer=renderer, model="manual")
    params = segmentation_params(segments, max_segments=len(evs))
    labels = segment(make_preview(srgb), **params)
    n = int(labels.max()) + 1
    if n < len(evs):
        warnings.warn(f"only {n} segments found; using the first {n} of {len(evs)} EVs", stacklevel=2)
    return Recipe(evs=[float(e) for e in evs[:n]], labels=labels, renderer=renderer, model="manual", segmentation=params)


def _write(job: Job, photo: Photo, pixels: np.ndarray, *, bit_depth: int | None, overwrite: bool) -> None:
    out = dataclasses.replace(photo, pixels=pixels)
    write_photo(job.dst, out, bit_depth=bit_depth, overwrite=overwrite)


def render_file(
    job: Job,
    *,
    evs: list[float] | None = None,
    recipe_file: str | None = None,
    renderer: str | None = None,
    strength: float = 1.0,
    bit_depth: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    write_recipe: bool = False,
) -> None:
    """``deepexposure render`` for one photo: by hand-given ``evs`` or a saved recipe file."""
    photo = read_photo(job.src, max_pixels=max_pixels)
    if recipe_file is not None:
        recipe = Recipe.load(recipe_file)
    else:
        recipe = manual_recipe(photo.pixels, list(evs or []), renderer or "fusion")
    pixels = render(photo.pixels, recipe, renderer=renderer, strength=strength)
    _write(job, photo, pixels, bit_depth=bit_depth, overwrite=overwrite)
    if write_recipe:
        used = dataclasses.replace(recipe, renderer=renderer or recipe.renderer, evs=[e * strength for e in recipe.evs])
        used.save(recipe_path_for(job.dst))


def segment_file(job: Job, *, segmentation: dict | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 overwrite: bool = False) -> int:
    """``deepexposure segment`` for one photo: write the segment overlay; returns the number of segments.

    ``segmentation``: :func:`~deepexposure.segmentation.segment` parameters over ``SEGMENT_DEFAULTS`` (a policy's).
    """
    photo = read_photo(job.src, max_pixels=max_pixels)
    labels = segment(make_preview(photo.pixels), **segmentation_params(segmentation))
    img = overlay(photo.pixels, labels).astype(np.float32) / 255.0
    write_photo(job.dst, Photo(pixels=img, alpha=None, bit_depth=8, exif=None, icc_profile=photo.icc_profile,
                               source=None, mode="RGB"), overwrite=overwrite)
    return int(labels.max()) + 1


_ENHANCERS: dict = {}


def _enhancer(model: str | None, renderer: str, strength: float, device: str | None):
    """One Enhancer per (model, renderer, strength) per process: workers load the policy once."""
    from deepexposure.enhance import Enhancer

    key = (model, renderer, strength, device)
    if key not in _ENHANCERS:
        _ENHANCERS[key] = Enhancer(model, renderer=renderer, strength=strength, device=device)
    return _ENHANCERS[key]


def enhance_file(
    job: Job,
    *,
    model: str | None = None,
    renderer: str = ENHANCE_RENDERER,
    strength: float = 1.0,
    device: str | None = None,
    bit_depth: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    write_recipe: bool = False,
) -> None:
    """``deepexposure enhance`` for one photo, optionally with its recipe sidecar."""
    enhancer = _enhancer(model, renderer, strength, device)
    photo = read_photo(job.src, max_pixels=max_pixels)
    out, recipe = enhancer.enhance_photo(photo)
    write_photo(job.dst, out, bit_depth=bit_depth, overwrite=overwrite)
    if write_recipe:
        recipe.save(recipe_path_for(Path(job.dst)))
