"""``deepexposure make-pairs``: synthetic development pairs from well-exposed photos."""

from __future__ import annotations

import click

from deepexposure.data import DegradeConfig, make_dev_pairs

__all__ = ["COMMANDS", "make_pairs"]


@click.command("make-pairs", no_args_is_help=True)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the degradations (per photo stem).")
@click.option("--long-edge", type=click.IntRange(16), default=512, show_default=True,
              help="Downscale so that the long edge is at most this many pixels (never upscales).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N source photos (sorted).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty OUT folder, replacing files.")
def make_pairs(sources, out, seed, long_edge, limit, overwrite):
    """Make synthetic development pairs from well-exposed photos (files or folders).

    Writes OUT/target/<stem>.png (the photo, downscaled), OUT/input/<stem>.png (a synthetic exposure error
    of it: global EV offset, smooth local EV field, clipping, tone curve, 8-bit) and OUT/degradations.json
    (the parameters of every degradation). The same seed gives the same files.

    \b
    Example:
      deepexposure make-pairs ../shared/data/bsds500/test -o data/dev --seed 0
    """
    pairs = make_dev_pairs(sources, out, seed=seed, long_edge=long_edge, config=DegradeConfig(), limit=limit,
                           overwrite=overwrite, progress=True)
    click.echo(f"{len(pairs)} pairs written to {out}", err=True)


COMMANDS = [make_pairs]
