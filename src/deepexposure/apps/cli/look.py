"""``deepexposure fit-look``: learn a look (exposure share and offset, bracket, contrast, saturation) from a
photographer's own edited pairs, scored by leave-one-out."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

__all__ = ["COMMANDS", "fit_look"]


@click.command("fit-look", no_args_is_help=True)
@click.argument("pairs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(path_type=str), help="The look file to write (.json).")
@click.option("--name", default=None, help="The look's name (default: the file's stem); 1-64 characters.")
@click.option("--model", default=None, type=click.Path(path_type=str),
              help="The exposure model the look sits on: natural (default) or a global-EV .npz.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Worker processes.")
@click.option("--force", is_flag=True,
              help="Write the look even when it does not beat the natural look on held-out pairs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing look file.")
def fit_look(pairs, out, name, model, jobs, force, overwrite):
    """Fit a look to your own edits: PAIRS are folders with input/ and target/ (the same photo before and after
    your edit, matched by file name), at least 5 pairs in all.

    The look is the natural exposure correction, then the share of it you keep and an EV offset, an optional
    fused bracket (shadows lifted, highlights held), a contrast curve and a saturation gain: the style among
    10,395 that is best on all your pairs. Each pair is also scored by the style fitted WITHOUT it (leave-one-out):
    that held-out PSNR is printed per pair and in total, and is the figure to trust. A look that does not beat
    the natural look on held-out pairs is not written (--force writes it anyway). White balance is not fitted.

    \b
    Use the look anywhere a look is taken:
      deepexposure fit-look my_edits/ -o mylook.json
      deepexposure enhance photos/ -o out/ --look mylook.json
      deepexposure edit photo.jpg --look mylook.json
    """
    from deepexposure.atomic import atomic_write_text, unwritable
    from deepexposure.errors import DataError
    from deepexposure.evaluation.look_fit import fit_look as fit
    from deepexposure.evaluation.look_fit import load_fit_pairs
    from deepexposure.image.look import look_name_problem

    path = Path(out)
    if path.suffix.lower() != ".json":
        raise DataError(f"--out {out}: a look file is .json")
    if path.is_dir():
        raise DataError(f"--out {out} is a folder; give a file name ending in .json")
    if path.exists() and not overwrite:
        raise DataError(f"{out} exists; pass --overwrite to replace it")
    blocked = unwritable(path.parent if str(path.parent) else Path("."))
    if blocked:
        raise DataError(f"--out {out}: cannot write there ({blocked})")
    name = path.stem if name is None else name
    if not 1 <= len(name) <= 64:
        raise DataError(f"--name must have 1-64 characters, got {len(name)}")
    if look_name_problem(name):
        raise DataError(f"--name must be printable characters (no newline, tab or control character), got {name!r}")

    data = load_fit_pairs(pairs)
    args = [*pairs, "-o", out, "--name", name, *(["--model", model] if model else [])]
    command = "deepexposure fit-look " + " ".join(shlex.quote(str(a)) for a in args)  # from the options, not argv
    result = fit(data, name=name, model=model, jobs=jobs, progress=lambda m: click.echo(m, err=True),
                 provenance={"fitted_on": ", ".join(str(p) for p in pairs), "command": command})
    width = max(len("mean"), *(len(r["pair"]) for r in result.rows))
    click.echo(f"{'pair':<{width}}  input  natural  look (held out)")
    for r in result.rows:
        click.echo(f"{r['pair']:<{width}}  {r['input']:5.2f}  {r['natural']:7.2f}  {r['look']:6.2f}")
    click.echo(f"{'mean':<{width}}  {result.input_psnr:5.2f}  {result.natural_psnr:7.2f}  {result.loo_psnr:6.2f}"
               f"   PSNR dB; the look beats natural on {result.wins}/{len(result.rows)} held-out pairs")
    s = result.look.style
    click.echo(f"look {name}: EV share {s.ev_scale:g}, EV offset {s.ev_offset:+g}, bracket "
               f"{list(s.bracket) or 'none'}, contrast {s.contrast:g}, saturation {s.saturation:g}")
    if not result.helps and not force:
        raise DataError(f"the look does not beat the natural look on held-out pairs ({result.loo_psnr:.2f} dB vs "
                        f"{result.natural_psnr:.2f}): your pairs may not share one style; not written (--force "
                        "writes it anyway)")
    atomic_write_text(path, result.look.to_json() + "\n", overwrite=overwrite)
    click.echo(f"wrote {path}", err=True)


COMMANDS = [fit_look]
