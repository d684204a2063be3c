"""64x64 previews of photo folders, cached on disk.

Images are float32 gamma-encoded sRGB in [0, 1], (H, W, 3); EVs are stops in linear light. Pure numpy: no torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from deepexposure.atomic import atomic_write
from deepexposure.errors import DataError, PhotoError
from deepexposure.image.io import iter_photo_paths, read_photo
from deepexposure.image.segmentation import make_preview

log = logging.getLogger(__name__)




def cache_key(paths: Sequence[Path], size: int) -> str:
    """Hash of (resolved path, mtime, byte size) of every file and the preview size."""
    h = hashlib.sha256(f"previews-v1:{size}".encode())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"\0{p.resolve()}\0{st.st_mtime_ns}\0{st.st_size}".encode())
        except OSError:
            h.update(f"\0{p}\0missing".encode())
    return h.hexdigest()[:20]


def load_previews(
    paths: Iterable[str | os.PathLike],
    *,
    size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, list[Path]]:
    """Read photos and reduce each to a (size, size, 3) preview (area resampling, aspect ratio not kept).

    ``paths``: photo files and/or folders (folders are searched recursively for supported photos). Returns
    (float32 (N, size, size, 3) sRGB in [0, 1], the N paths kept, in order). A file that cannot be read is
    reported with one warning line and skipped; no usable photo raises :class:`DataError`. With ``cache_dir`` the
    stack is stored as ``previews-<size>-<hash>.npz`` keyed by the resolved paths, their mtimes and byte sizes,
    and ``size``, so a re-run over unchanged files reads it back instead of decoding.
    """
    try:
        files = iter_photo_paths([Path(p) for p in paths], recursive=True)
    except PhotoError as exc:
        raise DataError(str(exc)) from None
    if not files:
        raise DataError("no photos given")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"previews-{size}-{cache_key(files, size)}.npz"
        if cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    return z["previews"].astype(np.float32, copy=False), [Path(s) for s in z["paths"]]
            except (OSError, KeyError, ValueError) as exc:
                log.warning("ignoring unreadable preview cache %s (%s)", cache, exc)
    stack: list[np.ndarray] = []
    kept: list[Path] = []
    for p in tqdm(files, desc="previews", unit="photo", disable=not progress, leave=False):
        try:
            px = read_photo(p).pixels
        except PhotoError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
            continue
        stack.append(make_preview(px, size))
        kept.append(p)
    if not stack:
        raise DataError(f"none of the {len(files)} photos could be read")
    previews = np.stack(stack).astype(np.float32)
    if cache is not None:
        try:
            atomic_write(cache, lambda fh: np.savez(fh, previews=previews, paths=np.array([str(p) for p in kept])))
        except OSError as exc:
            log.warning("cannot write preview cache %s (%s)", cache, exc)
    return previews, kept
