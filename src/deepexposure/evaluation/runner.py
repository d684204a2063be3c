"""Run methods over image pairs and measure them (:func:`evaluate_pairs`).

Each method gets the full-resolution input (float32 sRGB [0,1] as read by :func:`deepexposure.image.io.read_photo`);
its output is compared to the target by :func:`deepexposure.evaluation.metrics.compute_metrics` (8-bit, resized to
``long_edge``). The input itself is always measured too, as method ``input`` (what ``identity`` also gives).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from deepexposure.atomic import atomic_write_bytes
from deepexposure.errors import DeepExposureError
from deepexposure.evaluation.baselines import Method, get_method
from deepexposure.evaluation.metrics import DEFAULT_LONG_EDGE, METRICS, compute_metrics

__all__ = ["evaluate_pairs", "THUMB_LONG_EDGE", "thumb_name", "save_thumb"]

#: Long edge (pixels) of the report's JPEG thumbnails.
THUMB_LONG_EDGE = 320


def thumb_name(stem: str, column: str) -> str:
    """File name of a thumbnail (``column`` is ``input``, ``target`` or a method name), safe for any OS."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in column)
    return f"{stem}__{safe}.jpg"


def save_thumb(srgb: np.ndarray, path: Path, *, long_edge: int = THUMB_LONG_EDGE) -> None:
    """Write a JPEG thumbnail (quality 90) of float sRGB [0,1] (H,W,3), atomically."""
    h, w = srgb.shape[:2]
    s = min(1.0, long_edge / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = cv2.resize(np.ascontiguousarray(srgb, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    u8 = np.floor(np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - OpenCV cannot fail on a valid uint8 image
        raise DeepExposureError(f"cannot encode thumbnail {path}")
    atomic_write_bytes(path, buf.tobytes())


def _call(method: Method, img: np.ndarray, target: np.ndarray | None, stem: str) -> np.ndarray:
    if getattr(method, "needs_stem", False):
        return method(img, target=target, stem=stem)
    return method(img, target=target if method.needs_target else None)


def _evaluate_one(pair, methods: Sequence[Method], long_edge: int | None, ssim_variant: str,
                  thumbs_dir: Path | None) -> list[dict]:
    """Records for one pair: the input, then each method (errors are recorded, not raised)."""
    from deepexposure.image.io import read_photo

    stem = pair.stem
    inp = read_photo(pair.input_path).pixels
    tgt = read_photo(pair.target_path).pixels
    if inp.shape != tgt.shape:
        raise DeepExposureError(f"{stem}: input {inp.shape[1]}x{inp.shape[0]} and target "
                                f"{tgt.shape[1]}x{tgt.shape[0]} differ in size")
    if thumbs_dir is not None:
        save_thumb(inp, thumbs_dir / thumb_name(stem, "input"))
        save_thumb(tgt, thumbs_dir / thumb_name(stem, "target"))
    rec = {"stem": stem, "method": "input", "seconds": 0.0, "error": ""}
    rec.update(compute_metrics(inp, tgt, long_edge=long_edge, ssim_variant=ssim_variant))
    records = [rec]
    for m in methods:
        rec = {"stem": stem, "method": m.name, "seconds": float("nan"), "error": ""}
        t0 = time.perf_counter()
        try:
            out = _call(m, inp, tgt, stem)
            rec["seconds"] = time.perf_counter() - t0
            rec.update(compute_metrics(out, tgt, long_edge=long_edge, ssim_variant=ssim_variant))
            if thumbs_dir is not None:
                save_thumb(out, thumbs_dir / thumb_name(stem, m.name))
        except (DeepExposureError, ValueError) as exc:
            rec["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rec.update({k: float("nan") for k in METRICS})
        records.append(rec)
    return records


# ---- worker processes: methods are re-created by name once per process (policies are not shipped by pickle)
_WORKER_METHODS: list[Method] = []


def _init_worker(specs: list) -> None:
    global _WORKER_METHODS
    cv2.setNumThreads(1)
    _WORKER_METHODS = [get_method(spec[0], renderer=spec[1], highlight_guard=spec[2]) if isinstance(spec, tuple)
                       else spec for spec in specs]


def _worker(pair, long_edge, ssim_variant, thumbs_dir) -> list[dict]:
    return _evaluate_one(pair, _WORKER_METHODS, long_edge, ssim_variant, thumbs_dir)


def evaluate_pairs(pairs: Sequence, methods: Sequence[Method | str], *, long_edge: int | None = DEFAULT_LONG_EDGE,
                   ssim_variant: str = "wang", jobs: int = 1, progress: bool = True,
                   thumbs_dir: str | os.PathLike | None = None, renderer: str | None = None,
                   highlight_guard: bool = True) -> list[dict]:
    """Measure ``methods`` (objects or names for :func:`get_method`) on ``pairs`` (``Pair(stem, input_path, target_path)``).

    Returns one record per (image, column), images in the given order, columns ``input`` then each method:
    ``{"stem", "method", "mse", "psnr", "ssim", "de76", "de2000", "seconds", "error"}`` (metrics NaN and ``error``
    set when the method failed on that image). ``jobs > 1`` runs images in parallel processes; methods are
    re-created there from their ``spec`` (from :func:`get_method`), others are pickled. ``thumbs_dir``: write
    JPEG thumbnails of every input, output and target there (for the HTML report). ``renderer`` and
    ``highlight_guard`` apply to policies given by name (as ``enhance``'s options).
    """
    ms = [get_method(m, renderer=renderer, highlight_guard=highlight_guard) if isinstance(m, (str, Path)) else m
          for m in methods]
    names = [m.name for m in ms]
    if len(set(names)) != len(names) or "input" in names:
        raise DeepExposureError(f"method names must be unique and not 'input': {', '.join(names)}")
    tdir = None
    if thumbs_dir is not None:
        tdir = Path(thumbs_dir)
        tdir.mkdir(parents=True, exist_ok=True)
    pairs = list(pairs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc="evaluate", unit="photo")
    results: list[list[dict]] = []
    try:
        if jobs <= 1 or len(pairs) <= 1:
            for p in pairs:
                results.append(_evaluate_one(p, ms, long_edge, ssim_variant, tdir))
                if bar:
                    bar.update()
        else:
            specs = [getattr(m, "spec", m) for m in ms]
            # spawn, not fork: forking a process whose OpenCV/torch thread pools are running can crash the child
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                     initargs=(specs,)) as ex:
                futs = [ex.submit(_worker, p, long_edge, ssim_variant, tdir) for p in pairs]
                for f in futs:
                    results.append(f.result())
                    if bar:
                        bar.update()
    finally:
        if bar:
            bar.close()
    records = [r for rs in results for r in rs]
    failed = [r for r in records if r["error"]]
    if failed:
        warnings.warn(f"{len(failed)} method runs failed (first: {failed[0]['method']} on {failed[0]['stem']}: "
                      f"{failed[0]['error']})", stacklevel=2)
    return records
