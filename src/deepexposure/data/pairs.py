"""Paired folders (``input/`` and ``target/`` matched by stem) and their previews.

Images are float32 gamma-encoded sRGB in [0, 1], (H, W, 3); EVs are stops in linear light. Pure numpy: no torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from deepexposure.atomic import atomic_write
from deepexposure.data.previews import cache_key
from deepexposure.errors import DataError, PhotoError
from deepexposure.image.io import iter_photo_paths, read_photo
from deepexposure.image.segmentation import make_preview

log = logging.getLogger(__name__)




class Pair(NamedTuple):
    """One input photo and its target (expert-retouched or clean) photo, matched by file stem or FiveK id."""

    stem: str
    input_path: Path
    target_path: Path


def _photos_by_stem(folder: Path) -> dict[str, Path]:
    """Supported photo files of a folder by stem; the same stem with two suffixes is a layout error."""
    out: dict[str, Path] = {}
    for p in iter_photo_paths([folder]):
        if p.stem in out:
            raise DataError(f"{folder}: two photos named {p.stem} ({out[p.stem].name}, {p.name})")
        out[p.stem] = p
    return out


def _report_missing(what: str, names: Sequence[str]) -> None:
    if names:
        shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
        warnings.warn(f"{len(names)} {what} skipped: {shown}", stacklevel=3)


def paired_folder(root: str | os.PathLike) -> list[Pair]:
    """Pairs from ``root/input`` and ``root/target``, matched by file stem (any supported suffix), sorted by stem.

    Stems found on one side only are reported (one warning per side) and skipped; a missing folder, the same stem
    twice in one folder, or no pair at all raise :class:`DataError`.
    """
    root = Path(root)
    for name in ("input", "target"):
        if not (root / name).is_dir():
            raise DataError(f"{root}: no '{name}' folder (expected {root}/input and {root}/target)")
    inputs, targets = _photos_by_stem(root / "input"), _photos_by_stem(root / "target")
    _report_missing("inputs without a target", sorted(set(inputs) - set(targets)))
    _report_missing("targets without an input", sorted(set(targets) - set(inputs)))
    pairs = [Pair(s, inputs[s], targets[s]) for s in sorted(set(inputs) & set(targets))]
    if not pairs:
        raise DataError(f"{root}: no input/target pair with matching file names")
    return pairs


#: Largest relative difference between the aspect ratios (width / height, upright) of a training pair's input and
#: target: both are squashed alike to a square preview, so a crop or a rotation would pair different content.
PAIR_ASPECT_TOLERANCE = 0.01


def _aspect_mismatch(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Relative difference of the aspect ratios of two (H, W, ...) shapes: 0 for the same, 0.01 for 1%."""
    r = (a[1] / a[0]) / (b[1] / b[0])
    return max(r, 1.0 / r) - 1.0


def load_pair_previews(
    pairs: Sequence[Pair],
    *,
    size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Pair]]:
    """Previews of every pair's input and target (read_photo + make_preview, as :func:`load_previews`), in order.

    Returns (float32 (N, size, size, 3) sRGB [0, 1] input previews, the target previews alike, the N pairs kept).
    A pair with an unreadable side, or whose input and target aspect ratios differ by more than
    :data:`PAIR_ASPECT_TOLERANCE` (a rotated target), is reported with one warning line naming it and skipped, also
    when the result comes from the cache; the lines are appended to ``notes`` when given. No usable pair raises
    :class:`DataError`. With ``cache_dir`` the result is stored as ``pairs-<size>-<hash>.npz``, keyed by the
    resolved paths, mtimes and byte sizes of both files of every pair, and ``size``.
    """
    pairs = list(pairs)
    if not pairs:
        raise DataError("no pairs given")
    cache = None
    if cache_dir is not None:
        files = [f for p in pairs for f in (p.input_path, p.target_path)]
        cache = Path(cache_dir) / f"pairs-{size}-{cache_key(files, size)}.npz"
        if cache.is_file():
            got = None
            try:
                with np.load(cache, allow_pickle=False) as z:
                    if "skipped" in z.files:  # a cache of an earlier release does not say what it skipped: rebuilt
                        got = (z["inputs"].astype(np.float32, copy=False),
                               z["targets"].astype(np.float32, copy=False), [pairs[int(i)] for i in z["kept"]])
                        skipped = [str(m) for m in z["skipped"]]
            except (OSError, KeyError, ValueError, IndexError) as exc:
                log.warning("ignoring unreadable pair preview cache %s (%s)", cache, exc)
            if got is not None:
                for msg in skipped:  # said again on every run, as when the cache was built
                    warnings.warn(msg, stacklevel=2)
                if notes is not None:
                    notes.extend(skipped)
                return got
    ins: list[np.ndarray] = []
    tgs: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[str] = []
    for k, p in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress, leave=False)):
        try:
            a, b = read_photo(p.input_path).pixels, read_photo(p.target_path).pixels
        except PhotoError as exc:
            skipped.append(f"pair {p.stem} skipped: {exc}")
            warnings.warn(skipped[-1], stacklevel=2)
            continue
        off = _aspect_mismatch(a.shape, b.shape)
        if off > PAIR_ASPECT_TOLERANCE:
            turned = " (the target is rotated)" if a.shape[:2] == b.shape[1::-1] else ""
            skipped.append(f"pair {p.stem} skipped: input {p.input_path} ({a.shape[1]}x{a.shape[0]}) and target "
                           f"{p.target_path} ({b.shape[1]}x{b.shape[0]}) differ in aspect ratio by {off:.1%} "
                           f"(more than {PAIR_ASPECT_TOLERANCE:.0%}){turned}")
            warnings.warn(skipped[-1], stacklevel=2)
            continue
        ins.append(make_preview(a, size))
        tgs.append(make_preview(b, size))
        kept.append(k)
    if not kept:
        raise DataError(f"none of the {len(pairs)} pairs is usable (unreadable or different aspect ratios)")
    x, y = np.stack(ins).astype(np.float32), np.stack(tgs).astype(np.float32)
    if cache is not None:
        try:
            atomic_write(cache, lambda fh: np.savez(fh, inputs=x, targets=y, kept=np.array(kept, np.int64),
                                                     skipped=np.array(skipped, dtype=str)))
        except OSError as exc:
            log.warning("cannot write pair preview cache %s (%s)", cache, exc)
    if notes is not None:
        notes.extend(skipped)
    return x, y, [pairs[k] for k in kept]
