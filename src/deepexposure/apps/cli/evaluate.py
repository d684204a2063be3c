"""``deepexposure evaluate``: measure methods on paired folders, FiveK, or unpaired photos (docs/evaluation.md)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from deepexposure.errors import DataError
from deepexposure.image.render import ENHANCE_RENDERER, NATURAL_RENDERER, RENDERERS

__all__ = ["COMMANDS", "evaluate", "default_methods"]

_DEFAULTS = ("identity", "auto-exposure", "clahe", "fixed-fusion", "oracle-global")


def default_methods(*, paired: bool = True) -> list[str]:
    """Methods used when none is given: the baselines (oracle-global only when paired), plus the two looks of the
    shipped natural model (``natural``, ``expert``) and the paper's policy (``paper``) where they are shipped."""
    from deepexposure.inference.global_ev import default_natural_path
    from deepexposure.inference.loader import default_model_path

    names = [m for m in _DEFAULTS if paired or not m.startswith("oracle")]
    if default_natural_path().is_file():
        names += ["natural", "expert"]
    if default_model_path().is_file():
        names.append("paper")
    return names


@click.command("evaluate")
@click.option("--pairs", "pairs_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Paired folder with input/ and target/ (matched by file stem).")
@click.option("--fivek", "fivek_root", type=click.Path(file_okay=False, path_type=Path),
              help="Exported MIT-Adobe FiveK root (input folder + expert folder).")
@click.option("--fold", default="test", show_default=True,
              type=click.Choice(["test", "train_input", "train_expert"]), help="FiveK fold (with --fivek).")
@click.option("--expert", default="C", show_default=True, help="FiveK expert (with --fivek).")
@click.option("--unpaired", "unpaired_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of photos without targets (needs --reference).")
@click.option("--reference", "reference_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of good photos for --unpaired.")
@click.option("-m", "--method", "methods", multiple=True,
              help="Method name, policy .onnx/.pt file / run folder, or folder:PATH (repeatable). Default: identity, "
                   "auto-exposure, clahe, fixed-fusion, oracle-global, natural, expert, paper.")
@click.option("--renderer", type=click.Choice(list(RENDERERS)), default=None,
              help=f"Renderer for the models (as `enhance`; default: each model's own, {NATURAL_RENDERER} for "
                   f"natural/expert, {ENHANCE_RENDERER} for paper and policies).")
@click.option("--highlight-guard/--no-highlight-guard", default=True, show_default=True,
              help="As `enhance`: lower a segment's EV that would push its brightest 5% past white (local, rolloff "
                   "and balanced renderers only). --no-highlight-guard gives the policies' own EVs.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Output folder for the report (created).")
@click.option("--long-edge", default="500", show_default=True,
              help="Long edge (px) the metrics are computed at; 'native' for the photos' own size.")
@click.option("--ssim", "ssim_variant", type=click.Choice(["wang", "rgb"]), default="wang", show_default=True,
              help="SSIM variant: Wang's ssim.m on BT.601 luma, or scikit-image per-RGB-channel mean.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=1, show_default=True, help="Parallel processes.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N photos.")
@click.option("--no-thumbs", is_flag=True, help="Do not write thumbnails (report.html then has numbers only).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def evaluate(pairs_dir, fivek_root, fold, expert, unpaired_dir, reference_dir, methods, renderer, highlight_guard,
             out, long_edge, ssim_variant, jobs, limit, no_thumbs, quiet):
    """Measure methods against targets (MSE, PSNR, SSIM, CIE76, CIEDE2000 at 500 px) and write a report.

    Writes OUT/metrics.csv (per photo and method), OUT/summary.json, OUT/summary.md and OUT/report.html with
    thumbnails (OUT/thumbs/). With --unpaired: histogram intersections of luminance, contrast and saturation
    with the --reference photos, OUT/unpaired.{json,md} and OUT/contact_sheet.png.

    \b
    Examples:
      deepexposure evaluate --pairs data/dev -o eval/dev
      deepexposure evaluate --fivek ~/fivek --fold test -m deepexposure -m fixed-fusion -o eval/fivek -j 4
      deepexposure evaluate --pairs ../shared/data/fivek_deeplpf -m clahe \\
          -m folder:../shared/data/fivek_deeplpf/deeplpf_output -o eval/deeplpf
      deepexposure evaluate --unpaired photos/ --reference good/ -m auto-exposure -o eval/unpaired
    """
    _evaluate(pairs_dir, fivek_root, fold, expert, unpaired_dir, reference_dir, methods, renderer, out,
              long_edge, ssim_variant, jobs, limit, no_thumbs, quiet, highlight_guard)


@contextlib.contextmanager
def _undo_new_files(out: Path, thumbs: Path | None):
    """On a failure inside, remove the thumbnails this run wrote (those of an earlier report stay) and the
    folders it created: a failed evaluation leaves no half-written report folder."""
    existed = [p for p in (out, thumbs) if p is not None and p.is_dir()]
    before = set(thumbs.iterdir()) if thumbs is not None and thumbs.is_dir() else set()
    try:
        yield
    except BaseException:
        if thumbs is not None and thumbs.is_dir():
            for f in set(thumbs.iterdir()) - before:
                with contextlib.suppress(OSError):
                    f.unlink()
        for folder in (thumbs, out):
            if folder is not None and folder not in existed:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty
        raise


def _parse_long_edge(value: str) -> int | None:
    if value.lower() in ("native", "none", "0"):
        return None
    try:
        v = int(value)
    except ValueError:
        raise DataError(f"--long-edge must be a positive integer or 'native', got {value!r}") from None
    if v < 16:
        raise DataError(f"--long-edge must be at least 16, got {v}")
    return v


def _evaluate(pairs_dir, fivek_root, fold, expert, unpaired_dir, reference_dir, methods, renderer, out, long_edge,
              ssim_variant, jobs, limit, no_thumbs, quiet, highlight_guard: bool = True) -> None:
    from deepexposure.data import fivek_pairs, paired_folder
    from deepexposure.evaluation import evaluate_pairs, evaluate_unpaired, write_report, write_unpaired_report
    from deepexposure.evaluation.report import markdown_table, summarize
    from deepexposure.image.io import iter_photo_paths

    sources = [x for x in (pairs_dir, fivek_root, unpaired_dir) if x is not None]
    if len(sources) != 1:
        raise DataError("give exactly one of --pairs DIR, --fivek ROOT or --unpaired DIR")
    if not str(out).strip():
        raise DataError("-o is empty: give the report folder")
    le = _parse_long_edge(long_edge)
    names = list(methods) or default_methods(paired=unpaired_dir is None)
    config = {"long_edge": le, "ssim_variant": ssim_variant, "renderer": renderer, "highlight_guard": highlight_guard,
              "methods": names}

    if unpaired_dir is not None:
        if reference_dir is None:
            raise DataError("--unpaired needs --reference DIR (a folder of well-exposed photos)")
        photos = iter_photo_paths([unpaired_dir])
        ref = iter_photo_paths([reference_dir])
        if not photos:
            raise DataError(f"{unpaired_dir}: no photos")
        if not ref:
            raise DataError(f"{reference_dir}: no photos")
        photos = photos[:limit] if limit else photos
        config.update(dataset=f"unpaired {unpaired_dir} vs reference {reference_dir}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = evaluate_unpaired(photos, ref, names, long_edge=le, progress=not quiet, renderer=renderer,
                                    highlight_guard=highlight_guard)
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
        paths = write_unpaired_report(res, out, config=config)
        click.echo(paths["unpaired.md"].read_text(encoding="utf-8").split("\n\n", 2)[-1], nl=False)
        click.echo(f"report written to {out}", err=True)
        return

    if reference_dir is not None:
        raise DataError("--reference is only used with --unpaired")
    if pairs_dir is not None:
        pairs = paired_folder(pairs_dir)
        config["dataset"] = f"pairs {pairs_dir}"
    else:
        pairs = fivek_pairs(fivek_root, fold=fold, expert=expert)
        config["dataset"] = f"FiveK {fivek_root} fold {fold} expert {expert.upper()}"
    if limit:
        pairs = pairs[:limit]
    config["n_pairs"] = len(pairs)
    thumbs_dir = None if no_thumbs else Path(out) / "thumbs"
    with warnings.catch_warnings(record=True) as caught, _undo_new_files(Path(out), thumbs_dir):
        warnings.simplefilter("always")
        records = evaluate_pairs(pairs, names, long_edge=le, ssim_variant=ssim_variant, jobs=jobs,
                                 progress=not quiet, thumbs_dir=thumbs_dir,
                                 renderer=renderer, highlight_guard=highlight_guard)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    write_report(records, out, config=config, thumbs=None if no_thumbs else "thumbs")
    click.echo(markdown_table(summarize(records)), nl=False)
    click.echo(f"report written to {out} (report.html, summary.md, summary.json, metrics.csv)", err=True)


COMMANDS = [evaluate]
