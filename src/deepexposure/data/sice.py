"""SICE multi-exposure sequences: pick the dark/bright frames and the reference frames.

Images are float32 gamma-encoded sRGB in [0, 1], (H, W, 3); EVs are stops in linear light. Pure numpy: no torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from deepexposure.errors import DataError
from deepexposure.image.io import iter_photo_paths

log = logging.getLogger(__name__)



#: Mean grey level (fraction of white) at or below which a SICE frame counts as under-exposed (50/255;
#: the BSDS500 train 5th percentile is 0.23).
SICE_DARK_MAX = 0.2
#: Mean grey level (fraction of white) at or above which a SICE frame counts as over-exposed (170/255;
#: above 98% of BSDS500 train photos).
SICE_BRIGHT_MIN = 0.667


def _mean_grey(path: Path) -> float:
    """Mean of the RGB values (fraction of white) of a 32x32 box-filtered thumbnail.

    Pillow's JPEG draft mode decodes at 1/8 scale (DCT scaling), ~10x faster than a full decode; the mean is the
    same to about 0.002.
    """
    with Image.open(path) as im:
        im.draft("RGB", (64, 64))
        thumb = im.convert("RGB").resize((32, 32), Image.Resampling.BOX)
        return float(np.asarray(thumb, np.float32).mean()) / 255.0


def _sice_folder(root: str | os.PathLike) -> Path:
    """The folder of SICE frames: ``root/images`` when present, else ``root``; DataError when missing."""
    root = Path(root)
    folder = root / "images" if (root / "images").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{root}: no such folder")
    return folder


def _frame_grey(path: Path) -> float | None:
    """:func:`_mean_grey` of a frame, or None (with a warning) when it cannot be read."""
    try:
        return _mean_grey(path)
    except (OSError, ValueError, SyntaxError) as exc:
        warnings.warn(f"skipped: {path}: unreadable ({exc})", stacklevel=3)
        return None


def select_sice(
    root: str | os.PathLike, *, dark_max: float = SICE_DARK_MAX, bright_min: float = SICE_BRIGHT_MIN
) -> list[Path]:
    """Clearly under- or over-exposed frames of the SICE / Zero-DCE++ brackets, sorted by path.

    ``root``: the ``sice_zerodcepp`` folder (its ``images/`` sub-folder is used when present) or a folder of
    frames. A frame is kept when the mean grey level of its thumbnail (fraction of white, [0, 1]) is
    <= ``dark_max`` or >= ``bright_min``. On the shared 2,002 frames the defaults keep 541 dark + 442 bright = 983
    (docs/data.md). Unreadable frames are reported (warning) and skipped; none selected raises :class:`DataError`.
    """
    folder = _sice_folder(root)
    out = []
    for p in iter_photo_paths([folder]):
        g = _frame_grey(p)
        if g is not None and (g <= dark_max or g >= bright_min):
            out.append(p)
    if not out:
        raise DataError(f"{folder}: no frame with mean grey <= {dark_max} or >= {bright_min}")
    return out


#: Mean grey level a SICE reference frame should have (fraction of white; BSDS500 train median is about 0.43).
SICE_REFERENCE_GREY = 0.45
#: Mean grey band a SICE reference frame must lie in (else its run gives none).
SICE_REFERENCE_BAND = (0.3, 0.6)


def select_sice_references(
    root: str | os.PathLike, *, runs_csv: str | os.PathLike | None = None, min_frames: int = 3,
    grey: float = SICE_REFERENCE_GREY, band: tuple[float, float] = SICE_REFERENCE_BAND,
) -> list[Path]:
    """One well-exposed frame per bracket of the SICE / Zero-DCE++ set: more clean photos for synthetic inputs.

    SICE has no reference images, but each bracket (a run of consecutive file numbers, ``first..last`` in
    ``runs_csv``, default ``root/sequences_guess.csv``) spans under- to over-exposure of one static scene, so its
    frame whose mean grey level (thumbnail, fraction of white) is closest to ``grey`` is a plausible well-exposed
    photo. Runs shorter than ``min_frames`` and runs whose best frame lies outside ``band`` give none. Our choice
    (not in the paper); on the shared set it picks 239 of 272 runs (docs/data.md). Frames are named ``<n>.jpg``
    (any supported suffix). Returns paths sorted by frame number; a missing folder or runs file, or no frame
    selected, raises :class:`DataError`.
    """
    import csv

    folder = _sice_folder(root)
    runs_path = Path(runs_csv) if runs_csv is not None else Path(root) / "sequences_guess.csv"
    if not runs_path.is_file():
        raise DataError(f"{runs_path}: no runs file (CSV with columns first,last giving each bracket's frame numbers)")
    by_number = {int(p.stem): p for p in iter_photo_paths([folder]) if p.stem.isdigit()}
    with open(runs_path, newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    out = []
    for row in rows:
        try:
            first, last = int(row["first"]), int(row["last"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{runs_path}: expected integer columns 'first' and 'last'") from None
        frames = [by_number[n] for n in range(first, last + 1) if n in by_number]
        if len(frames) < min_frames:
            continue
        greys = [(g, f) for f in frames if (g := _frame_grey(f)) is not None]
        if not greys:
            continue
        g, best = min(greys, key=lambda s: abs(s[0] - grey))
        if band[0] <= g <= band[1]:
            out.append(best)
    if not out:
        raise DataError(f"{folder}: no bracket has a frame with mean grey in {band}")
    return sorted(out, key=lambda p: int(p.stem))
