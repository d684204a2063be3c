"""``deepexposure edit``: adjust a photo's recipe by eye in the browser (a local web app)."""

from __future__ import annotations

import click

from deepexposure.apps.cli.common import max_pixels_limit, max_pixels_option
from deepexposure.apps.cli.enhance import LOOK_HELP
from deepexposure.image.render import ENHANCE_RENDERER, NATURAL_RENDERER, RENDERER_HELP, RENDERERS


@click.command(no_args_is_help=True)
@click.argument("photo", type=click.Path(path_type=str))
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Start from this recipe (written by enhance --recipe, render --save-recipe or a previous edit) "
                   "instead of the policy's EVs; it must have been made for PHOTO.")
@click.option("--model", type=click.Path(), default=None,
              help="Model that seeds the sliders: natural (default: one global EV slider), paper (the shipped "
                   "DeepExposure policy: one slider per segment), a global-EV .npz, a .onnx or .pt policy file, or "
                   "a training run folder.")
@click.option("--look", default=None, metavar="natural|expert|FILE",
              help=f"Look that seeds the edit (its style follows the sliders; a --recipe carries its own). "
                   f"{LOOK_HELP}")
@click.option("--renderer", type=click.Choice(RENDERERS), default=None,
              help=f"Renderer to start with (default: the recipe's, else {NATURAL_RENDERER} for the natural model "
                   f"and {ENHANCE_RENDERER} for policies). {RENDERER_HELP}")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder the page saves into (default: the photo's folder). Only plain file names typed in the "
                   "page are accepted, inside this folder.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the editor to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@click.option("--device", default=None,
              help="Where the policy runs: cpu, cuda, cuda:N (mps for .pt policies; default: CUDA if present).")
@max_pixels_option
def edit(photo, recipe_file, model, look, renderer, out_dir, host, port, no_browser, device, max_pixels):
    """Edit the exposure of PHOTO in the browser: EV sliders seeded by the model, in a look.

    Starts a local web app (127.0.0.1, a random token in the URL) and opens the browser. Moving a slider
    re-renders a screen-size preview; "save" writes the full-resolution photo and its recipe (never replacing
    files without asking), which `render PHOTO --recipe` reproduces and `edit PHOTO --recipe` reopens.
    Camera RAW files work too (rawpy). Stop with Ctrl+C.

    \b
    Examples:
      deepexposure edit photo.jpg
      deepexposure edit photo.jpg --model paper --look expert
      deepexposure edit photo.jpg --recipe out/photo.recipe.json --renderer local
      deepexposure edit IMG_0119.CRW --no-browser --port 8800
    """
    from deepexposure.apps.editor.launch import open_editor

    limit, why = max_pixels_limit(max_pixels)
    open_editor(photo, recipe_file=recipe_file, model=model, look=look, renderer=renderer, out_dir=out_dir, host=host,
                port=port, open_browser=not no_browser, device=device, max_pixels=limit, max_pixels_why=why,
                announce=lambda line: click.echo(line, err=line.startswith("warning:")))

COMMANDS = [edit]
