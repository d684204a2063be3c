"""Options, checks and reporting shared by the photo-processing sub-commands."""

from __future__ import annotations

import math
import os

import click

from deepexposure.apps.batch import BatchResult
from deepexposure.errors import PhotoError
from deepexposure.image.io import DEFAULT_MAX_PIXELS, default_max_pixels

MAX_PIXELS_HELP = (f"Refuse photos larger than this many pixels, before decoding them (default: {DEFAULT_MAX_PIXELS:,}, "
                   "or less when the free memory cannot hold such a photo in each worker process).")


def bit_depth_option(f):
    return click.option(
        "--bit-depth", type=click.Choice(["8", "16"]), default=None,
        help="Output bits per channel (default: same as the input; JPEG/WebP/BMP are always 8).",
    )(f)


def max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(1), default=None, help=MAX_PIXELS_HELP)(f)


def max_pixels_limit(value: int | None, jobs: int = 1) -> tuple[int, str | None]:
    """The pixel limit in force and where it comes from (for the refusal message)."""
    if value is not None:
        return value, "--max-pixels"
    limit, why = default_max_pixels(jobs)
    return limit, (None if why == "default" else why)


def check_strength(strength: float) -> float:
    """``--strength`` must be a number in [0, 1] (Click's range check lets NaN through)."""
    if not (math.isfinite(strength) and 0.0 <= strength <= 1.0):
        raise PhotoError(f"--strength must be a number from 0 to 1, got {strength}")
    return strength


def check_overwrite(overwrite: bool, skip_existing: bool) -> None:
    """``--overwrite`` (replace existing outputs) and ``--skip-existing`` (keep them) say opposite things."""
    if overwrite and skip_existing:
        raise PhotoError("--overwrite and --skip-existing contradict each other (replace existing outputs, or keep "
                         "them): give one")


#: Set by :func:`report` once a photo command has written everything and said so: the console entry point
#: (:func:`deepexposure.apps.cli.run`) may then end the process without the interpreter's teardown.
FINISHED = {"photos": False}


def report(result: BatchResult, *, verb: str, out: str | os.PathLike | None = None, fast_exit: bool = True) -> None:
    """Print a one-line summary (saying where the outputs went); raise (exit 2) when any photo failed, after all
    were tried. ``fast_exit``: nothing is left to do in this process after it (no cluster to close): see
    :data:`FINISHED`."""
    FINISHED["photos"] = fast_exit
    total = len(result.done) + len(result.skipped) + len(result.failed)
    if total == 1 and result.failed:  # one photo: just its one-line error
        raise PhotoError(result.failed[0][1])
    parts = [f"{len(result.done)} {verb}"]
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped (existing)")
    if result.failed:
        parts.append(f"{len(result.failed)} failed")
    line = ", ".join(parts)
    if out is not None and (result.done or result.skipped):
        line += f"; outputs in {os.fspath(out)}"
    click.echo(line, err=True)
    if result.failed:
        for _src, msg in result.failed:
            click.echo(f"  failed: {msg}", err=True)
        raise PhotoError(f"{len(result.failed)} of {total} photos failed")
