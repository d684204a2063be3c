"""Start an editing session: check the output folder and the port, read the photo, seed the recipe, serve."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from deepexposure.errors import DataError


def open_editor(photo: str | os.PathLike, *, recipe_file: str | os.PathLike | None = None,
                model: str | os.PathLike | None = None, renderer: str | None = None,
                out_dir: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 0,
                open_browser: bool = True, device: str | None = None, max_pixels: int | None = None,
                max_pixels_why: str | None = None, announce: Callable[[str], None] = print,
                look: str | None = None) -> None:
    """Serve the editor for ``photo`` until interrupted.

    The checks that need no work come first (the web extra, the output folder, the port), then the photo is read
    (``max_pixels`` / ``max_pixels_why``: the pixel limit and why, as :func:`deepexposure.image.io.read_photo` takes them)
    and the sliders are seeded from ``recipe_file`` (which must fit the photo) or from ``model`` in ``look``.
    ``renderer`` overrides the recipe's. Bad input raises a :class:`~deepexposure.errors.DeepExposureError`.
    """
    from deepexposure.apps.editor.app import listen, require_web, serve
    from deepexposure.apps.editor.session import EditSession
    from deepexposure.apps.pipeline import check_recipe_fits
    from deepexposure.atomic import unwritable
    from deepexposure.image.io import read_photo
    from deepexposure.image.recipe import Recipe

    require_web()  # before any slow work: say at once when the extra is missing
    if look is not None and recipe_file is not None:
        raise DataError("--look seeds a new edit; a --recipe carries its own look")
    out = Path(out_dir) if out_dir is not None else Path(photo).parent
    blocked = unwritable(out)  # said now, not at the first save
    if blocked:
        raise DataError(f"--out-dir {out}: cannot save there ({blocked})")
    sock = listen(host, port)  # a port in use is said at once too, not after reading the photo
    try:
        img = read_photo(photo, max_pixels=max_pixels, max_pixels_why=max_pixels_why)
        if recipe_file is not None:
            recipe = Recipe.load(recipe_file)
            check_recipe_fits(recipe, img, recipe_file, photo)
        else:
            from deepexposure.inference.enhance import Enhancer

            recipe = Enhancer(model, renderer=renderer, device=device, look=look).recipe(img.pixels, per_segment=True)
        if renderer is not None and renderer != recipe.renderer:
            recipe = dataclasses.replace(recipe, renderer=renderer)
        session = EditSession(img, recipe, out_dir=out, source=photo, recipe_source=recipe_file)
    except BaseException:
        sock.close()
        raise
    serve(session, host=host, port=port, open_browser=open_browser, sock=sock, announce=announce)
