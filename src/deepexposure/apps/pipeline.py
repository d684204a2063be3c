"""File-level jobs: read a photo, compute or load a recipe, render, write (metadata and alpha kept).

These are module-level functions so they can be sent to worker processes by :mod:`deepexposure.apps.batch`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from deepexposure.apps.batch import Job, recipe_path_for
from deepexposure.errors import DataError
from deepexposure.image.io import DEFAULT_MAX_PIXELS, Photo, read_photo, write_photo
from deepexposure.image.look import load_look, scaled_style_dict
from deepexposure.image.raw import enhance_photo, render_photo
from deepexposure.image.recipe import Recipe
from deepexposure.image.segmentation import make_preview, overlay, segment, segmentation_params
from deepexposure.image.sidecar import check_sidecars, global_ev, write_sidecars
from deepexposure.logs import stage
from deepexposure.memory import prefault

__all__ = ["manual_recipe", "render_file", "segment_file", "enhance_file", "recipe_path_for", "cached_enhancer",
           "recipe_matches", "check_recipe_fits", "LABEL_AGREEMENT"]

#: A recipe's 64x64 segment labels must agree with the photo's own segmentation on this share of the cells.
LABEL_AGREEMENT = 0.9


def recipe_matches(recipe: Recipe, photo: Photo) -> float | None:
    """Share of the 64x64 cells where ``recipe.labels`` equal the photo's own segmentation with the recipe's
    parameters (1.0 for the photo the recipe was made for); None for a recipe without labels."""
    if recipe.labels is None:
        return None
    labels = segment(make_preview(photo.pixels), **dict(recipe.segmentation or {}))
    if labels.shape != recipe.labels.shape:
        return 0.0
    return float(np.mean(labels == recipe.labels))


def check_recipe_fits(recipe: Recipe, photo: Photo, recipe_name, photo_name, hint: str = "") -> None:
    """Raise :class:`DataError` when ``recipe`` was made for another photo (:func:`recipe_matches` below
    :data:`LABEL_AGREEMENT`): its segment labels would put its EVs on the wrong parts of ``photo``."""
    agreement = recipe_matches(recipe, photo)
    if agreement is not None and agreement < LABEL_AGREEMENT:
        raise DataError(f"{recipe_name}: this recipe was not made for {photo_name} (its segments match the "
                        f"photo's on {100 * agreement:.0f}% of the preview, below {100 * LABEL_AGREEMENT:.0f}%)"
                        f"{hint}")


def manual_recipe(srgb: np.ndarray | None, evs: list[float], renderer: str, *, segments: dict | None = None
                  ) -> Recipe:
    """A recipe from exposure values given by hand (``srgb``: the float photo; not read, and may be None, for
    ``fusion``).

    ``fusion``: the EVs are applied to the whole photo and fused with it; no segmentation is needed.
    ``local``: the photo's 64x64 preview is segmented into at most ``len(evs)`` segments (in the order of
    :func:`deepexposure.image.segmentation.segment`, with ``segments`` over the shipped policy's parameters
    ``SEGMENT_DEFAULTS``) and EV k is applied inside segment k; if fewer segments are found, the extra EVs are
    dropped with a warning.
    """
    if renderer == "fusion":
        return Recipe(evs=[float(e) for e in evs], labels=None, renderer=renderer, model="manual")
    if srgb is None:
        raise ValueError(f"the {renderer} renderer needs the photo to segment it")
    params = segmentation_params(segments, max_segments=len(evs))
    labels = segment(make_preview(srgb), **params)
    n = int(labels.max()) + 1
    if n < len(evs):
        warnings.warn(f"only {n} segments found; using the first {n} of {len(evs)} EVs", stacklevel=2)
    return Recipe(evs=[float(e) for e in evs[:n]], labels=labels, renderer=renderer, model="manual", segmentation=params)


def _write_outputs(job: Job, photo: Photo, recipe: Recipe | None, *, bit_depth: int | None, overwrite: bool,
                   skip_existing: bool) -> None:
    """Write the photo, then its recipe (when asked); with ``skip_existing`` an existing one is left as it is.

    So a run killed (or failing) between the two writes is completed by a rerun with ``--skip-existing``.
    """
    if not (skip_existing and job.dst.exists()):
        with stage("encode"):
            write_photo(job.dst, photo, bit_depth=bit_depth, overwrite=overwrite)
    if recipe is not None and job.recipe is not None and not (skip_existing and job.recipe.exists()):
        recipe.save(job.recipe, overwrite=overwrite)


#: Bytes per pixel of a photo's work paged in before it is decoded (:func:`deepexposure.memory.prefault`): below
#: the lightest job's peak (12 MP: about 30 for ``render``'s fusion, 34 for ``enhance``), so that no page is faulted
#: in that the job would not have touched. 12 MP ``render``: 79,000 page faults in the fusion -> 17,000.
PREFAULT_BYTES_PER_PIXEL = 24


def _prefault_for(src: Path, max_pixels: int) -> None:
    """Page in the memory the photo at ``src`` will need, in the background, while it is decoded. A no-op for a
    file whose size Pillow cannot read from its header (e.g. a RAW: its pages are faulted in as they are touched)
    and for a photo over ``max_pixels`` (read_photo refuses it next) or whose file is too small to hold what its
    header says."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's decompression-bomb warning: read_photo has its own limit
            with Image.open(src) as im:
                w, h = im.size
    except Exception:  # whatever it is, read_photo says so next
        return
    # a header can lie (a truncated or forged file): JPEG and PNG hold at most a few hundred pixels a byte (a flat
    # frame), so a file smaller than a byte per 1,000 pixels is decoded without the page-in (and likely refused)
    if w * h <= max_pixels and w * h <= 1000 * os.path.getsize(src):
        prefault(PREFAULT_BYTES_PER_PIXEL * w * h)


def _with_recipe(job: Job, write_recipe: bool) -> Job:
    if write_recipe and job.recipe is None:
        return dataclasses.replace(job, recipe=recipe_path_for(Path(job.dst)))
    return job


def render_file(
    job: Job,
    *,
    evs: list[float] | None = None,
    recipe_file: str | None = None,
    renderer: str | None = None,
    strength: float = 1.0,
    bit_depth: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_pixels_why: str | None = None,
    overwrite: bool = False,
    write_recipe: bool = False,
    skip_existing: bool = False,
    look: str | None = None,
) -> None:
    """``deepexposure render`` for one photo: by hand-given ``evs`` or a saved recipe file.

    ``look`` (with ``evs`` only): a look name or file whose style stage (bracket, contrast, saturation) follows the
    given EVs; a recipe file carries its own look. The recipe actually applied is written to ``job.recipe`` (or,
    with ``write_recipe``, beside the output).
    """
    job = _with_recipe(job, write_recipe)
    _prefault_for(job.src, max_pixels)
    with stage("decode"):
        photo = read_photo(job.src, max_pixels=max_pixels, max_pixels_why=max_pixels_why)
    if recipe_file is not None:
        recipe = Recipe.load(recipe_file)
        check_recipe_fits(recipe, photo, recipe_file, Path(job.src).name, "; give its EVs with --ev instead")
    else:
        name = renderer or "fusion"  # the fusion needs no segmentation, so no float pixels
        recipe = manual_recipe(None if name == "fusion" else photo.pixels, list(evs or []), name)
        if look is not None:
            recipe = with_look(recipe, look)
    pixels = render_photo(photo, recipe, renderer=renderer, strength=strength)  # RAW: on its linear data
    used = dataclasses.replace(recipe, renderer=renderer or recipe.renderer, evs=[e * strength for e in recipe.evs],
                               style=scaled_style_dict(recipe.style, strength))
    _write_outputs(job, dataclasses.replace(photo, pixels=pixels), used, bit_depth=bit_depth, overwrite=overwrite,
                   skip_existing=skip_existing)


def with_look(recipe: Recipe, look: str) -> Recipe:
    """``recipe`` (EVs given by hand) with the style stage of ``look`` (its bracket, contrast and saturation; the
    look's EV share and offset belong to a model's EVs and are not applied to hand-given EVs)."""
    lk = load_look(look)
    style = dataclasses.replace(lk.style, ev_offset=0.0, ev_scale=1.0)
    return dataclasses.replace(recipe, look=lk.name, style=None if style.is_identity else style.to_dict())


def segment_file(job: Job, *, segmentation: dict | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 overwrite: bool = False, max_pixels_why: str | None = None) -> int:
    """``deepexposure segment`` for one photo: write the segment overlay; returns the number of segments.

    ``segmentation``: :func:`~deepexposure.image.segmentation.segment` parameters over ``SEGMENT_DEFAULTS`` (a policy's).
    """
    photo = read_photo(job.src, max_pixels=max_pixels, max_pixels_why=max_pixels_why)
    labels = segment(make_preview(photo.pixels), **segmentation_params(segmentation))
    img = overlay(photo.pixels, labels).astype(np.float32) / 255.0
    write_photo(job.dst, Photo(pixels=img, alpha=None, bit_depth=8, exif=None, icc_profile=photo.icc_profile,
                               source=None, mode="RGB"), overwrite=overwrite)
    return int(labels.max()) + 1


_ENHANCERS: dict = {}


def cached_enhancer(model: str | None, renderer: str | None, strength: float, device: str | None,
                    highlight_guard: bool = True, look: str | None = None):
    """One Enhancer per (model, renderer, strength, device, highlight_guard, look) per process: the model is loaded
    once (the CLI's early check and the photos of a one-process run share it; each worker loads it once)."""
    from deepexposure.inference.enhance import Enhancer

    key = (model, renderer, strength, device, highlight_guard, look)
    if key not in _ENHANCERS:
        _ENHANCERS[key] = Enhancer(model, renderer=renderer, strength=strength, device=device,
                                   highlight_guard=highlight_guard, look=look)
    return _ENHANCERS[key]


def enhance_file(
    job: Job,
    *,
    model: str | None = None,
    renderer: str | None = None,
    strength: float = 1.0,
    device: str | None = None,
    bit_depth: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_pixels_why: str | None = None,
    overwrite: bool = False,
    write_recipe: bool = False,
    skip_existing: bool = False,
    highlight_guard: bool = True,
    look: str | None = None,
    sidecars: tuple[str, ...] = (),
    write_output: bool = True,
) -> None:
    """``deepexposure enhance`` for one photo, with its recipe sidecar when ``job.recipe`` (or ``write_recipe``).
    ``model``/``renderer``/``look``: as :class:`~deepexposure.inference.enhance.Enhancer` takes them (None: defaults).

    ``sidecars``: editors (``image.sidecar.EDITORS``) whose sidecar is written beside ``job.src`` after the photo
    and recipe, carrying the recipe's global EV (``image.sidecar``); ``write_output=False`` (``--sidecar`` without
    ``-o``): only the recipe is computed (no full-resolution render) and ``job.dst`` is not written."""
    job = _with_recipe(job, write_recipe)
    if sidecars:  # a sidecar that would be refused fails the job before the photo is written
        check_sidecars(job.src, sidecars, overwrite=overwrite, skip_existing=skip_existing)
    enhancer = cached_enhancer(model, renderer, strength, device, highlight_guard, look)
    _prefault_for(job.src, max_pixels)
    with stage("decode"):
        photo = read_photo(job.src, max_pixels=max_pixels, max_pixels_why=max_pixels_why)
    if write_output:
        out, recipe = enhance_photo(enhancer, photo)  # RAW: the EVs go to its linear data
        _write_outputs(job, out, recipe, bit_depth=bit_depth, overwrite=overwrite, skip_existing=skip_existing)
    else:
        recipe = enhancer.recipe(photo.pixels)  # what enhance_photo computes before rendering (RAW: as shot)
        if job.recipe is not None and not (skip_existing and job.recipe.exists()):
            recipe.save(job.recipe, overwrite=overwrite)
    if sidecars:
        write_sidecars(job.src, sidecars, global_ev(recipe, make_preview(photo.pixels)), overwrite=overwrite,
                       skip_existing=skip_existing)
