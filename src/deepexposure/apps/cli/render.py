"""``deepexposure render`` and ``deepexposure segment``."""

from __future__ import annotations

import functools
import math

import click

from deepexposure.apps.batch import plan_jobs, run_batch
from deepexposure.apps.cli.common import (
    bit_depth_option,
    check_overwrite,
    check_strength,
    max_pixels_limit,
    max_pixels_option,
    report,
)
from deepexposure.apps.pipeline import render_file, segment_file
from deepexposure.errors import PhotoError
from deepexposure.image.look import load_look
from deepexposure.image.recipe import MAX_ABS_EV
from deepexposure.image.render import RENDERER_HELP, RENDERERS
from deepexposure.image.segmentation import segmentation_params


@click.command(no_args_is_help=True)
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--ev", "evs", type=float, multiple=True, metavar="STOPS",
              help=f"Exposure value in EV stops, -{MAX_ABS_EV:g} to {MAX_ABS_EV:g} (repeatable). fusion: one exposed "
                   "copy per EV; local: one EV per segment.")
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False), default=None,
              help="Render from a recipe JSON written by `enhance --recipe` (edit its EVs to adjust).")
@click.option("--renderer", type=click.Choice(RENDERERS), default=None,
              help=RENDERER_HELP)
@click.option("--look", default=None, metavar="natural|expert|FILE",
              help="With --ev: follow the EVs by this look's style (expert: the bracket, contrast and saturation "
                   "fitted on FiveK expert C). A --recipe carries its own look.")
@click.option("--strength", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Scale every EV and the look's style.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Output file (one photo) or folder.")
@click.option("--format", "fmt", type=click.Choice(["jpg", "png", "tif", "webp"]), default=None,
              help="Output format in folder mode (default: the input's).")
@bit_depth_option
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders, keeping the folder structure.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (and inputs, if OUT points at them).")
@click.option("--skip-existing", is_flag=True, help="Leave photos whose output exists.")
@click.option("--save-recipe", is_flag=True,
              help="Write a PHOTO.recipe.json sidecar next to each output (never replacing an existing one, such "
                   "as the --recipe being rendered, without --overwrite).")
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True, help="Parallel worker processes.")
@max_pixels_option
def render(photos, evs, recipe_file, renderer, look, strength, out, fmt, bit_depth, recursive, overwrite, skip_existing,
           save_recipe, jobs, max_pixels):
    """Apply exposure values to photos, at full resolution.

    \b
    Examples:
      deepexposure render photo.jpg --ev -1 --ev 1 --ev 2 -o fused.jpg
      deepexposure render photos/ --ev 1.5 --ev -0.5 --renderer local -o out/
      deepexposure render photo.jpg --recipe photo.recipe.json -o again.jpg
      deepexposure render photo.jpg --ev 0.5 --renderer rolloff --look expert -o retouched.jpg
    """
    if not evs and recipe_file is None:
        raise PhotoError("give exposure values with --ev (repeatable) or a --recipe file")
    if evs and recipe_file is not None:
        raise PhotoError("give either --ev or --recipe, not both")
    for ev in evs:
        if not (math.isfinite(ev) and abs(ev) <= MAX_ABS_EV):
            raise PhotoError(f"--ev {ev:g}: exposure values must be from -{MAX_ABS_EV:g} to {MAX_ABS_EV:g} EV stops")
    if look is not None:
        if recipe_file is not None:
            raise PhotoError("--look goes with --ev; a --recipe carries its own look")
        load_look(look)  # a bad name or file: one line, before any photo
    check_strength(strength)
    check_overwrite(overwrite, skip_existing)
    job_list = plan_jobs(photos, out, recursive=recursive, fmt=fmt, overwrite=overwrite, recipes=save_recipe,
                         protect=[recipe_file] if recipe_file else [])
    limit, why = max_pixels_limit(max_pixels, jobs)
    fn = functools.partial(
        render_file, evs=list(evs), recipe_file=recipe_file, renderer=renderer, strength=strength, look=look,
        bit_depth=int(bit_depth) if bit_depth else None, max_pixels=limit, max_pixels_why=why, overwrite=overwrite,
        skip_existing=skip_existing,
    )
    result = run_batch(job_list, fn, overwrite=overwrite, skip_existing=skip_existing, workers=jobs, desc="render")
    report(result, verb="rendered", out=job_list[0].dst if len(job_list) == 1 else out)


@click.command(no_args_is_help=True)
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(), help="Overlay file (one photo) or folder.")
@click.option("--model", default=None, type=click.Path(path_type=str),
              help="Segment as this policy (.onnx or .pt file, or run folder) was trained to (default: the shipped "
                   "policy).")
@click.option("--segments", "-T", type=click.IntRange(1, 64), default=None,
              help="Merge the Felzenszwalb segments of the 64x64 preview down to at most this many "
                   "(default: the policy's, 6 for the shipped one).")
@click.option("--overwrite", is_flag=True, help="Replace existing overlays.")
@max_pixels_option
def segment(photos, out, model, segments, overwrite, max_pixels):
    """Draw the segments the policy works on over each photo, numbered in episode order.

    The segmentation parameters are the policy's (stored in it when it was trained); without --model, the
    shipped policy's (deepexposure.image.segmentation.SEGMENT_DEFAULTS, no model is loaded).

    \b
    Example:
      deepexposure segment photo.jpg -o overlay.png
    """
    if model is not None:
        from deepexposure.inference.loader import model_segmentation

        params = segmentation_params(model_segmentation(model), max_segments=segments)
    else:
        params = segmentation_params(max_segments=segments)
    job_list = plan_jobs(photos, out, fmt="png", overwrite=overwrite)
    limit, why = max_pixels_limit(max_pixels)
    fn = functools.partial(segment_file, segmentation=params, max_pixels=limit, max_pixels_why=why,
                           overwrite=overwrite)
    result = run_batch(job_list, fn, overwrite=overwrite, desc="segment")
    report(result, verb="segmented", out=job_list[0].dst if len(job_list) == 1 else out)


COMMANDS = [render, segment]
