"""Development pairs: degraded copies of clean photos written as a paired folder.

Images are float32 gamma-encoded sRGB in [0, 1], (H, W, 3); EVs are stops in linear light. Pure numpy: no torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from deepexposure.atomic import atomic_write_text, clean_stale, temp_path
from deepexposure.data.degradation import DegradeConfig, degrade, image_rng
from deepexposure.data.pairs import Pair
from deepexposure.errors import DataError, PhotoError
from deepexposure.image.io import iter_photo_paths, read_photo, write_photo
from deepexposure.image.segmentation import reduce_long_edge

log = logging.getLogger(__name__)





def make_dev_pairs(
    sources: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    long_edge: int = 512,
    config: DegradeConfig = DegradeConfig(),
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[Pair]:
    """Make synthetic development pairs from well-exposed photos (files and/or folders, first ``limit`` kept).

    Each photo is downscaled (area) to ``long_edge`` (never upscaled) and rounded to 8 bits: that is the target,
    written as ``out_dir/target/<stem>.png``; :func:`degrade` of the target, drawn from (seed, stem), is written
    as ``out_dir/input/<stem>.png``. ``out_dir/degradations.json`` records the seed, the config and, per stem,
    the source, the size and the degradation params. The same (seed, sources) give byte-identical files.
    Unreadable sources are skipped with a warning (listed under ``skipped`` in the JSON). The set is built in a
    hidden folder beside ``out_dir`` and moved into place at the end, so a failed run leaves nothing behind.
    Raises :class:`DataError` for a non-empty ``out_dir`` without ``overwrite`` (with it, files are replaced and
    others left), duplicate stems or no readable source.
    """
    sources = [Path(s) for s in sources]
    try:
        paths = iter_photo_paths(sources)
    except PhotoError as exc:
        raise DataError(str(exc)) from None
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise DataError(f"no source photos found in {', '.join(map(str, sources))}" if sources else
                        "no source photos given")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise DataError(f"two sources named {p.stem}: {stems[p.stem]} and {p}")
        stems[p.stem] = p
    if not os.fspath(out_dir).strip():
        raise DataError("-o is empty: give the output folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder not empty (pass --overwrite to write into it)")
    record: dict = {"version": 1, "generator": "deepexposure.data.make_dev_pairs", "seed": int(seed),
                    "long_edge": int(long_edge), "config": config.to_dict(), "images": {}}
    # built in a hidden staging folder beside OUT, moved into place at the end: a failed or killed run leaves no
    # partial set (a killed run's staging folder is removed as stale by a later run, deepexposure.atomic)
    merge = out.is_dir() and any(out.iterdir())  # only with overwrite: files are replaced, others left
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent)
    stage = temp_path(out)
    stage.mkdir()
    pairs, skipped = [], {}
    try:
        for stem, src in tqdm(stems.items(), desc="make-pairs", unit="photo", disable=not progress):
            try:
                px = read_photo(src).pixels
            except PhotoError as exc:
                log.warning("skipped: %s", exc)
                skipped[stem] = str(exc)
                continue
            target = (np.round(reduce_long_edge(px, long_edge) * 255.0) / 255.0).astype(np.float32)
            degraded, params = degrade(target, image_rng(seed, stem), config=config)
            write_photo(stage / "target" / f"{stem}.png", target, bit_depth=8)
            write_photo(stage / "input" / f"{stem}.png", degraded, bit_depth=8)
            record["images"][stem] = {"source": str(src), "width": int(target.shape[1]),
                                      "height": int(target.shape[0]), "params": params}
            pairs.append(Pair(stem, out / "input" / f"{stem}.png", out / "target" / f"{stem}.png"))
        if not pairs:
            raise DataError(f"none of the {len(stems)} source photos could be read")
        if skipped:
            record["skipped"] = skipped
            log.warning("%d of %d source photos skipped (unreadable)", len(skipped), len(stems))
        atomic_write_text(stage / "degradations.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
        if merge:
            for sub in ("target", "input"):
                (out / sub).mkdir(exist_ok=True)
                for f in sorted((stage / sub).iterdir()):
                    os.replace(f, out / sub / f.name)
            os.replace(stage / "degradations.json", out / "degradations.json")
            shutil.rmtree(stage)
        else:
            if out.is_dir():
                out.rmdir()  # empty
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return pairs
