"""Options and reporting shared by the photo-processing sub-commands."""

from __future__ import annotations

import click

from deepexposure.batch import BatchResult
from deepexposure.errors import PhotoError

MAX_PIXELS_HELP = "Refuse photos larger than this many pixels (decompression-bomb guard)."


def bit_depth_option(f):
    return click.option(
        "--bit-depth", type=click.Choice(["8", "16"]), default=None,
        help="Output bits per channel (default: same as the input; JPEG/WebP are always 8).",
    )(f)


def report(result: BatchResult, *, verb: str) -> None:
    """Print a one-line summary; raise (exit 2) when any photo failed, after all were tried."""
    total = len(result.done) + len(result.skipped) + len(result.failed)
    if total == 1 and result.failed:  # one photo: just its one-line error
        raise PhotoError(result.failed[0][1])
    parts = [f"{len(result.done)} {verb}"]
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped (existing)")
    if result.failed:
        parts.append(f"{len(result.failed)} failed")
    click.echo(", ".join(parts), err=True)
    if result.failed:
        for _src, msg in result.failed:
            click.echo(f"  failed: {msg}", err=True)
        raise PhotoError(f"{len(result.failed)} of {total} photos failed")
