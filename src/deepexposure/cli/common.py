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
    parts = [f"{len(result.done)} {verb}"]
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped (existing)")
    if result.failed:
        parts.append(f"{len(result.failed)} failed")
    click.echo(", ".join(parts), err=True)
    if result.failed:
        if len(result.done) + len(result.skipped) == 0 and len(result.failed) == 1:
            raise PhotoError(result.failed[0][1])
        for _src, msg in result.failed:
            click.echo(f"  failed: {msg}", err=True)
        raise PhotoError(f"{len(result.failed)} of {len(result.failed) + len(result.done) + len(result.skipped)} photos failed")
