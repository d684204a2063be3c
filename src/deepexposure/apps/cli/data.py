"""``deepexposure make-pairs``: synthetic development pairs from well-exposed photos."""

from __future__ import annotations

import click

from deepexposure.data import FAMILIES, DegradeConfig, make_dev_pairs

__all__ = ["COMMANDS", "make_pairs"]


@click.command("make-pairs", no_args_is_help=True)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the degradations (per photo stem).")
@click.option("--long-edge", type=click.IntRange(16), default=512, show_default=True,
              help="Downscale so that the long edge is at most this many pixels (never upscales).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N source photos (sorted).")
@click.option("--family", "families", multiple=True, type=click.Choice(list(FAMILIES)),
              help="Put exactly this degradation family (repeatable) on every input, on top of the global EV "
                   "offset: a development set of one family. Default: the training mix of all families.")
@click.option("--withhold", multiple=True, type=click.Choice(list(FAMILIES)),
              help="The training mix without this family (repeatable).")
@click.option("--preset", type=click.Choice(["mix", "v1"]), default="mix", show_default=True,
              help="mix: the family mix (docs/data.md); v1: the single error model of releases <= 0.1.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty OUT folder, replacing files.")
def make_pairs(sources, out, seed, long_edge, limit, families, withhold, preset, overwrite):
    """Make synthetic development pairs from well-exposed photos (files or folders).

    Writes OUT/target/<stem>.png (the photo, downscaled), OUT/input/<stem>.png (a synthetic exposure error
    of it: a global EV offset, about 0 for a quarter of the photos, plus degradation families: spatial fields,
    tone-curve errors, white-balance drift, noise, highlight roll-off, camera curves, JPEG; see docs/data.md)
    and OUT/degradations.json (the parameters of every degradation). The same seed gives the same files.

    \b
    Examples:
      deepexposure make-pairs ../shared/data/bsds500/test -o data/dev --seed 0
      deepexposure make-pairs ../shared/data/bsds500/test -o data/dev-noise --family noise --seed 0
    """
    if families and withhold:
        raise click.UsageError("--family and --withhold cannot be combined")
    config = DegradeConfig.from_dict({"preset": preset})
    if families:
        config = DegradeConfig.from_dict({"preset": preset, "families": list(families), "always": list(families)})
    elif withhold:
        config = DegradeConfig.from_dict({"preset": preset, "withhold": list(withhold)})
    pairs = make_dev_pairs(sources, out, seed=seed, long_edge=long_edge, config=config, limit=limit,
                           overwrite=overwrite, progress=True)
    click.echo(f"{len(pairs)} pairs written to {out}", err=True)


COMMANDS = [make_pairs]
