"""``deepexposure enhance``: the shipped natural model (or a given one) fixes the exposure of photos, in a look."""

from __future__ import annotations

import functools

import click

from deepexposure.apps.batch import plan_beside, plan_jobs, run_batch
from deepexposure.apps.cli.common import (
    bit_depth_option,
    check_overwrite,
    check_strength,
    max_pixels_limit,
    max_pixels_option,
    report,
)
from deepexposure.apps.pipeline import cached_enhancer, enhance_file
from deepexposure.errors import PhotoError
from deepexposure.image.render import ENHANCE_RENDERER, NATURAL_RENDERER, RENDERER_HELP, RENDERERS
from deepexposure.image.sidecar import EDITORS, sidecar_path

LOOK_HELP = ("natural (default): restore the exposure, as shot; a well-exposed photo comes back nearly unchanged. "
             "expert: the natural correction, then a style fitted on real expert retouches (MIT-Adobe FiveK expert "
             "C: shadows lifted, more contrast). Or a look file (.json).")


@click.command(no_args_is_help=True)
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--out", type=click.Path(), default=None,
              help="Output file (one photo) or folder. Optional with --sidecar (then only the sidecars are written).")
@click.option("--look", default="natural", show_default=True, metavar="natural|expert|FILE", help=LOOK_HELP)
@click.option("--model", type=click.Path(), default=None,
              help="natural (default: one global EV from boosted trees on the preview's statistics), paper (the "
                   "shipped DeepExposure policy, the paper's configuration: one EV per segment), a global-EV .npz, "
                   "a policy .onnx or .pt file, or a training run folder (its policy.onnx if present, else its "
                   "policy.pt). .pt files need torch.")
@click.option("--renderer", type=click.Choice(RENDERERS), default=None,
              help=f"Default: {NATURAL_RENDERER} for the natural model, {ENHANCE_RENDERER} for policies. "
                   f"{RENDERER_HELP}")
@click.option("--strength", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Scale every EV and the look's style: 0 = unchanged, 1 = the full edit.")
@click.option("--highlight-guard/--no-highlight-guard", default=True, show_default=True,
              help="Policies (--model paper, runs) with the local, rolloff and balanced renderers: lower a segment's "
                   "EV where brightening it "
                   "would push its brightest 5% past white (a bright sky next to a dark building); fusion is never "
                   "guarded. The recipe holds the EVs applied.")
@click.option("--recipe", "save_recipe", is_flag=True,
              help="Write PHOTO.recipe.json beside each output: EV per segment, segment masks, model id. "
                   "Edit it and re-render with `deepexposure render PHOTO --recipe FILE`. An existing recipe is "
                   "never replaced without --overwrite. With --sidecar and no -o: PHOTO.recipe.json beside the photo.")
@click.option("--sidecar", "sidecars", type=click.Choice(EDITORS), multiple=True,
              help="Also write the RAW editor's own sidecar beside each input photo (PHOTO.CRW.xmp for darktable, "
                   "PHOTO.CRW.pp3 for RawTherapee; give it twice for both), holding the exposure as an edit to keep "
                   "adjusting: one global EV in the editor's exposure module (per-segment EVs only in the --recipe "
                   "JSON; the look's contrast and saturation are not carried). Without -o only the sidecars (and "
                   "--recipe) are written, no photo. An existing sidecar is never replaced without --overwrite: a "
                   "darktable history gets our exposure appended as one more step, a RawTherapee profile is refused. "
                   "Also for JPEG/TIFF/PNG, which both editors open with the same sidecar names.")
@click.option("--format", "fmt", type=click.Choice(["jpg", "png", "tif", "webp"]), default=None,
              help="Output format in folder mode (default: the input's).")
@bit_depth_option
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True, help="Parallel worker processes.")
@click.option("--cluster", metavar="ADDRESS", default=None,
              help="Run on a Dask cluster: its scheduler address (tcp://host:8786) or scheduler file (.json). "
                   "PHOTOS and -o may then be fsspec URLs (s3://bucket/in). Needs pip install "
                   "'deepexposure[cluster]'; see docs/scaling.md.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders, keeping the folder structure.")
@click.option("--skip-existing", is_flag=True, help="Leave photos whose output exists (resume a large folder).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (and inputs, if OUT points at them).")
@click.option("--device", default=None,
              help="Where the policy runs: cpu, cuda or cuda:N (ONNX Runtime for .onnx models; torch for .pt, "
                   "where mps works too) (default: CUDA if present).")
@max_pixels_option
def enhance(photos, out, look, model, renderer, strength, highlight_guard, save_recipe, sidecars, fmt, bit_depth, jobs,
            cluster, recursive, skip_existing, overwrite, device, max_pixels):
    """Fix the exposure of photos, in the natural or the expert look.

    Each photo is reduced to 64x64; the model picks its exposure (one global EV, or with a policy one EV per
    segment) and the exposure is applied to the full-resolution photo, then the look's style. EXIF/ICC and bit
    depth are kept.

    \b
    Examples:
      deepexposure enhance photo.jpg -o fixed.jpg
      deepexposure enhance photo.jpg -o retouched.jpg --look expert
      deepexposure enhance photo.jpg -o paper.jpg --model paper
      deepexposure enhance holiday/ -o fixed/ --recursive --jobs 2 --skip-existing
      deepexposure enhance photo.jpg -o out/ --recipe --renderer local --strength 0.7
      deepexposure enhance photo.CRW --sidecar darktable
      deepexposure enhance raws/ -r --sidecar rawtherapee --sidecar darktable
      deepexposure enhance s3://bucket/in -o s3://bucket/out -r --cluster tcp://scheduler:8786
    """
    check_strength(strength)
    check_overwrite(overwrite, skip_existing)
    sidecars = tuple(dict.fromkeys(sidecars))
    check_sidecar_options(out, sidecars, cluster, fmt, bit_depth)
    if cluster is not None:
        from deepexposure.apps.cluster import require_dask

        require_dask()  # before loading anything
    cached_enhancer(model, renderer, strength, device, highlight_guard, look)  # fail early on a bad model/look/device
    if cluster is not None:
        from deepexposure.apps.cluster import enhance_on_cluster

        result, url_jobs = enhance_on_cluster(
            photos, out, cluster, model=model, renderer=renderer, strength=strength, device=device,
            highlight_guard=highlight_guard, look=look,
            bit_depth=int(bit_depth) if bit_depth else None, max_pixels=max_pixels, recursive=recursive, fmt=fmt,
            overwrite=overwrite, skip_existing=skip_existing, recipes=save_recipe)
        report(result, verb="enhanced", out=url_jobs[0].dst if len(url_jobs) == 1 else out, fast_exit=False)
        return
    limit, why = max_pixels_limit(max_pixels, jobs)
    fn = functools.partial(
        enhance_file, model=model, renderer=renderer, strength=strength, device=device,
        highlight_guard=highlight_guard, look=look,
        bit_depth=int(bit_depth) if bit_depth else None, max_pixels=limit, max_pixels_why=why, overwrite=overwrite,
        skip_existing=skip_existing, sidecars=sidecars, write_output=out is not None,
    )
    if out is None:  # sidecars only, beside each photo: their existence is checked per editor by enhance_file
        job_list = plan_beside(photos, lambda src: [sidecar_path(src, e) for e in sidecars], recursive=recursive,
                               recipes=save_recipe)
        done = [j for j in job_list if skip_existing and all(
            p.exists() for p in (*(sidecar_path(j.src, e) for e in sidecars), *j.outputs[1:]))]
        result = run_batch([j for j in job_list if j not in done], fn, overwrite=True, workers=jobs,
                           desc="sidecars")
        result.skipped.extend(j.src for j in done)
        report(result, verb="with sidecars" if len(sidecars) > 1 else f"with a {sidecars[0]} sidecar",
               out=job_list[0].dst if len(job_list) == 1 and len(sidecars) == 1 else None)
        return
    job_list = plan_jobs(photos, out, recursive=recursive, fmt=fmt, overwrite=overwrite, recipes=save_recipe)
    # --skip-existing: a photo whose outputs exist but not all of its sidecars still gets them (enhance_file, given
    # skip_existing, leaves the existing outputs as they are)
    late = [j for j in job_list if skip_existing and sidecars and all(p.exists() for p in j.outputs)
            and not all(sidecar_path(j.src, e).exists() for e in sidecars)]
    result = run_batch([j for j in job_list if j not in late], fn, overwrite=overwrite, skip_existing=skip_existing,
                       workers=jobs, desc="enhance")
    if late:
        more = run_batch(late, fn, overwrite=True, workers=jobs, desc="sidecars")
        result.done += more.done
        result.failed += more.failed
    report(result, verb="enhanced", out=job_list[0].dst if len(job_list) == 1 else out)


def check_sidecar_options(out, sidecars: tuple[str, ...], cluster, fmt, bit_depth) -> None:
    """One-line errors for options that do not go together with (or without) ``--sidecar``."""
    if out is None and not sidecars:
        raise PhotoError("give -o OUT (the output photo or folder), or --sidecar darktable|rawtherapee to write only "
                         "the editors' sidecars beside the photos")
    if sidecars and cluster is not None:
        raise PhotoError("--sidecar writes beside local photos; it does not run with --cluster")
    if out is None:
        for name, value in (("--format", fmt), ("--bit-depth", bit_depth)):
            if value:
                raise PhotoError(f"{name} sets the output photo, but without -o only sidecars are written: "
                                 f"add -o OUT, or leave out {name}")


COMMANDS = [enhance]
