"""Fit a look to a photographer's own edits, and score it by leave-one-out (``deepexposure fit-look``).

A look is the natural exposure plus a few-parameter :class:`~deepexposure.image.look.Style` (the share of the
natural EV kept and an offset, in EV stops; an optional Mertens bracket; a contrast power; a saturation gain).
Given pairs (``input/`` and ``target/`` matched by stem, as ``evaluate`` and ``train --pairs`` read them), every
style of a grid (:class:`LookGrid`) is scored on every pair, the style with the best mean PSNR is the look, and
each pair is also scored by the style that is best on the *other* pairs: that leave-one-out figure is the one to
trust (the in-sample one flatters). The shipped ``expert`` look is this fit on the 14 FiveK expert-C pairs.

Speed (100 pairs of 512 px in 27 s on 2 cores, ``benchmarks/fit_look.py``): the grid is scored on copies
reduced to ``fit_long_edge`` (128 px: the style is global; the bracket fusion is the one non-pointwise step) and,
for the contrast and saturation stage, which is per pixel, on a fixed random sample of each pair's pixels. The
held-out scores are then measured exactly: each pair rendered at its own size by :class:`Enhancer` with the
held-out style, and scored by the protocol's PSNR (:func:`deepexposure.evaluation.metrics.psnr`).

White balance is not fitted: the look format holds no colour gains (a change of format for a later release).
Images are float32 sRGB [0, 1]; PSNR in dB on 8-bit values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from deepexposure.data.pairs import PAIR_ASPECT_TOLERANCE, Pair, paired_folder
from deepexposure.errors import DataError
from deepexposure.evaluation.metrics import psnr
from deepexposure.image.fusion import fuse_exposures
from deepexposure.image.io import from_float, read_photo
from deepexposure.image.look import Look, Style, contrast_lut
from deepexposure.image.render import render_rolloff
from deepexposure.image.segmentation import reduce_long_edge

__all__ = ["LookGrid", "LookFit", "FitPair", "MIN_PAIRS", "MIN_ALIGNMENT", "MIN_SIDE", "load_fit_pairs", "fit_look"]

#: Fewest pairs fit-look accepts: each leave-one-out fit then still sees 4 pairs for its 5 parameters.
MIN_PAIRS = 5
#: Lowest rank correlation of luminance (128 px) between an input and its target: an edit keeps the order of
#: tones nearly everywhere (0.97-1.00 on the 14 FiveK expert-C pairs), two different photos do not (-0.3 to 0.6
#: on the same photos paired at random).
MIN_ALIGNMENT = 0.8
#: Shortest side (px) of a photo of a pair: below it there are too few pixels to tell an edit from another photo.
MIN_SIDE = 8
#: Long edge (px) of the copies the grid is scored on.
FIT_LONG_EDGE = 128
#: Pixels sampled per pair for the per-pixel tone stage (all of them below this).
TONE_SAMPLES = 1024
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass(frozen=True)
class LookGrid:
    """The styles fit-look tries: every combination of these values (EV stops; contrast power; saturation gain)."""

    ev_scales: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    ev_offsets: tuple[float, ...] = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)
    brackets: tuple[tuple[float, ...], ...] = ((), (-1.0, 1.0), (-1.0, 1.0, 2.0))
    contrasts: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)
    saturations: tuple[float, ...] = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3)

    def exposures(self) -> list[tuple[float, float]]:
        return [(k, o) for k in self.ev_scales for o in self.ev_offsets]

    def styles(self) -> list[Style]:
        """In table order: exposure (scale, offset), then bracket, contrast, saturation."""
        return [Style(o, k, b, c, s) for k, o in self.exposures() for b in self.brackets for c in self.contrasts
                for s in self.saturations]


@dataclass
class FitPair:
    """A pair read for fitting: ``x``/``y`` float32 sRGB [0,1] at the input's size, ``ev0`` the natural EV."""

    name: str
    x: np.ndarray
    y: np.ndarray
    ev0: float = 0.0


@dataclass
class LookFit:
    """The fitted look and its scores. ``rows``: one dict per pair (``pair``, ``input``, ``natural``, ``look``: the
    held-out PSNR, ``style``: the style fitted without it); means over the pairs in ``input_psnr``,
    ``natural_psnr``, ``loo_psnr`` (the figure to trust) and ``fitted_psnr`` (in-sample, flattering)."""

    look: Look
    rows: list[dict]
    input_psnr: float
    natural_psnr: float
    loo_psnr: float
    fitted_psnr: float
    grid: LookGrid = field(default_factory=LookGrid)

    @property
    def wins(self) -> int:
        """Pairs whose held-out look beats the natural look."""
        return sum(r["look"] > r["natural"] for r in self.rows)

    @property
    def helps(self) -> bool:
        """Whether the look beats the natural look on held-out pairs (mean PSNR); if not, it learned no style."""
        return self.loo_psnr > self.natural_psnr


def _alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation of the luminance of two same-size float sRGB images at 128 px long edge (1: same order).
    By hand rather than ``scipy.stats.spearmanr``, which gives NaN for a flat image (a flat target is no edit: 0)."""
    a = reduce_long_edge(x, 128) @ _LUMA
    b = reduce_long_edge(y, 128) @ _LUMA
    ra = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / den) if den > 0 else 0.0


def load_fit_pairs(folders: Sequence[str | os.PathLike], *, max_pixels: int | None = None) -> list[FitPair]:
    """Read the pairs of ``folders`` (each with ``input/`` and ``target/``), checked: at least :data:`MIN_PAIRS`,
    no stem twice across folders, aspect ratios within 1%, and each target an edit of its input
    (:data:`MIN_ALIGNMENT`); anything wrong is one :class:`DataError` line naming the pairs. A target of another
    size (same aspect) is resized to its input's."""
    seen: dict[str, str] = {}
    for f in folders:
        key = os.path.realpath(f)
        if key in seen:
            raise DataError(f"the pair folder {f} is given twice" + (f" (as {seen[key]})" if seen[key] != str(f) else ""))
        seen[key] = str(f)
    pairs: list[Pair] = [p for f in folders for p in paired_folder(f)]
    stems = [p.stem for p in pairs]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise DataError(f"the same pair name in two folders: {', '.join(twice[:3])}")
    if len(pairs) < MIN_PAIRS:
        raise DataError(f"fit-look needs at least {MIN_PAIRS} pairs (input/ and target/ matched by stem) to fit a "
                        f"look and score it on held-out pairs; found {len(pairs)}")
    kw = {} if max_pixels is None else {"max_pixels": max_pixels}
    out, bad_aspect, unaligned, tiny = [], [], [], []
    for p in pairs:
        x = read_photo(p.input_path, **kw).pixels
        y = read_photo(p.target_path, **kw).pixels
        small = min(x.shape[:2] + y.shape[:2])
        if small < MIN_SIDE:
            tiny.append(f"{p.stem} ({x.shape[1]}x{x.shape[0]}, {y.shape[1]}x{y.shape[0]})")
            continue
        if x.shape != y.shape:
            ax, ay = x.shape[1] / x.shape[0], y.shape[1] / y.shape[0]
            if abs(ax / ay - 1) > PAIR_ASPECT_TOLERANCE:
                bad_aspect.append(f"{p.stem} ({x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]})")
                continue
            y = cv2.resize(y, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_AREA)
        r = _alignment(x, y)
        if r < MIN_ALIGNMENT:
            unaligned.append(f"{p.stem} ({r:.2f})")
            continue
        out.append(FitPair(p.stem, x, np.ascontiguousarray(y, dtype=np.float32)))
    if tiny:
        raise DataError(f"{len(tiny)} pair(s) too small to fit a look on (under {MIN_SIDE} px a side): "
                        f"{', '.join(tiny[:3])}")
    if bad_aspect:
        raise DataError(f"{len(bad_aspect)} pair(s) differ in aspect ratio (a crop or rotation, not a tone edit): "
                        f"{', '.join(bad_aspect[:3])}")
    if unaligned:
        raise DataError(f"{len(unaligned)} pair(s) do not align: the target is not an edit of its input (tone rank "
                        f"correlation below {MIN_ALIGNMENT}; edits measure 0.97-1.00): {', '.join(unaligned[:3])}")
    return out


def _q8(img: np.ndarray) -> np.ndarray:
    return from_float(img, 8).astype(np.float32)


def _tone_psnr(sub: np.ndarray, target: np.ndarray, luts: np.ndarray, saturations: np.ndarray) -> np.ndarray:
    """PSNR (C, S) of every contrast (``luts`` (C, 65536), 0-255) and saturation of the tone stage on sampled pixels
    ``sub`` (n, 3) float sRGB against ``target`` (n, 3) on the 0-255 scale, as :func:`deepexposure.image.look.tone`
    computes it (16-bit codes, the table, the luma-preserving gain, the clip) but for the final 8-bit rounding.

    The gain ``y + s * (t - y)`` makes the error linear in ``s``: over the pixels no gain of the grid pushes past
    white or black the MSE is a quadratic in ``s`` (three sums per contrast); the few others are computed per
    gain, with the clip."""
    codes = (np.clip(sub, 0.0, 1.0) * np.float32(65535) + np.float32(0.5)).astype(np.uint16)
    t = luts[:, codes]  # (C, n, 3), 0-255
    y = (t @ _LUMA)[..., None]  # (C, n, 1)
    d = t - y
    # The error e0 + s * d is linear in the gain s: without the clip its SSE is a quadratic in s. A gain in [0, 1]
    # lands between the luma and the pixel (both in range), so it never clips; a gain above 1 clips a pixel only if
    # the largest gain of the grid does. Those few pixels are computed per gain, with the clip.
    e0 = y - target
    s64 = saturations.astype(np.float64)

    def quad(e: np.ndarray, dv: np.ndarray) -> np.ndarray:  # (C, S): SSE of e + s * dv for every gain
        a, b, dd = (np.einsum("cnk,cnk->c", u, v).astype(np.float64) for u, v in ((e, e), (e, dv), (dv, dv)))
        return a[:, None] + 2 * s64[None, :] * b[:, None] + s64[None, :] ** 2 * dd[:, None]

    sse = quad(e0, d)
    top = float(saturations.max())
    if top > 1.0:
        v = y + np.float32(top) * d
        clips = ((v < 0) | (v > 255)).any(axis=(0, 2))
        if clips.any():
            yc, dc, tc = y[:, clips], d[:, clips], target[clips]
            clipped = quad(yc - tc, dc)
            for i, g in enumerate(saturations):
                if g <= 1.0:
                    continue
                sse[:, i] -= clipped[:, i]
                err = np.clip(yc + np.float32(g) * dc, 0.0, 255.0) - tc
                sse[:, i] += np.einsum("cnk,cnk->c", err, err).astype(np.float64)
    mse = np.maximum(sse / t[0].size, 1e-12)
    return 10.0 * np.log10(255.0**2 / mse)


def _table_row(x: np.ndarray, y: np.ndarray, ev0: float, grid: LookGrid, seed: int) -> np.ndarray:
    """PSNR of every style of ``grid`` on one pair (already reduced to the fit size), in table order."""
    rng = np.random.default_rng(seed)
    n = x.shape[0] * x.shape[1]
    idx = np.sort(rng.choice(n, TONE_SAMPLES, replace=False)) if n > TONE_SAMPLES else np.arange(n)
    target = _q8(y).reshape(-1, 3)[idx]  # 0-255
    luts = np.stack([contrast_lut(float(c)) for c in grid.contrasts]) * np.float32(255)
    sats = np.asarray(grid.saturations, np.float32)
    rows = []
    for k, o in grid.exposures():
        exposed = render_rolloff(x, [ev0 * k + o], None)
        codes = from_float(exposed, 8)  # 8-bit codes: the bracket's exposure tables have 256 entries, not 65,536
        for b in grid.brackets:
            base = fuse_exposures(codes, list(b)) if b else exposed
            rows.append(_tone_psnr(base.reshape(-1, 3)[idx], target, luts, sats).ravel())
    return np.concatenate(rows)


#: The pairs of the fit in progress, for the worker processes: forked after it is set, they read the photos from
#: their copy of the parent's memory instead of receiving megabytes of pixels by pickle.
_PAIRS: Sequence[FitPair] = ()


def _row_task(args: tuple) -> np.ndarray:
    i, grid, fit_long_edge, seed = args
    p = _PAIRS[i]
    return _table_row(np.ascontiguousarray(reduce_long_edge(p.x, fit_long_edge), np.float32),
                      np.ascontiguousarray(reduce_long_edge(p.y, fit_long_edge), np.float32), p.ev0, grid, seed + i)


def _exact_task(args: tuple) -> dict[str, float]:
    """Protocol PSNRs of one pair at its own size: the input, the natural look, and each named style."""
    i, model, name, named = args
    x, y = _PAIRS[i].x, _PAIRS[i].y
    out = {"input": psnr(x, y), "natural": psnr(_enhancer(model, "natural", Style()).enhance(x)[0], y)}
    for key, style in named.items():
        same = next((k for k in out if named.get(k) == style), None)
        out[key] = out[same] if same else psnr(_enhancer(model, name, style).enhance(x)[0], y)
    return out


@functools.lru_cache(maxsize=8)
def _enhancer(model: str | os.PathLike | None, name: str, style: Style):
    """One :class:`Enhancer` per (model, look) in each process: the model is read once, not once per pair."""
    from deepexposure.inference.enhance import Enhancer

    return Enhancer(model, look="natural" if style.is_identity and name == "natural" else Look(name, style))


class _Workers:
    """``jobs`` forked worker processes (or this process for one job) that see the pairs in :data:`_PAIRS`."""

    def __init__(self, pairs: Sequence[FitPair], jobs: int) -> None:
        global _PAIRS
        _PAIRS = pairs
        self.pool = None
        if jobs > 1 and len(pairs) > 1:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            self.pool = ProcessPoolExecutor(max_workers=min(jobs, len(pairs)), mp_context=ctx)

    def map(self, fn: Callable, tasks: list) -> list:
        if self.pool is None:
            return [fn(t) for t in tasks]
        return list(self.pool.map(fn, tasks, chunksize=max(1, len(tasks) // 16)))

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc) -> None:
        global _PAIRS
        if self.pool is not None:
            self.pool.shutdown()
        _PAIRS = ()


def fit_look(pairs: Sequence[FitPair], *, name: str = "my-look", model: str | os.PathLike | None = None,
             grid: LookGrid | None = None, fit_long_edge: int = FIT_LONG_EDGE, jobs: int = 1, seed: int = 0,
             provenance: dict | None = None, progress: Callable[[str], None] | None = None) -> LookFit:
    """Fit a look on ``pairs`` (:func:`load_fit_pairs`) on top of ``model`` (a global-EV model: None/``natural``
    or an ``.npz``) and score it by leave-one-out (module doc). ``jobs`` processes do the work; ``seed`` fixes
    the pixel samples. ``provenance`` is added to the look's own (pairs, scores, grid, model, version)."""
    from deepexposure.inference.enhance import Enhancer

    if len(pairs) < MIN_PAIRS:
        raise DataError(f"fit-look needs at least {MIN_PAIRS} pairs; got {len(pairs)}")
    grid = grid or LookGrid()
    say = progress or (lambda _msg: None)
    natural = Enhancer(model, look="natural")
    if not natural.is_global:
        raise DataError("fit-look fits a look on top of a global-EV model (natural or a .npz), not a policy")
    for p in pairs:
        p.ev0 = float(natural.recipe(p.x).evs[0])
    styles = grid.styles()
    with _Workers(pairs, jobs) as workers:
        say(f"scoring {len(styles)} styles on {len(pairs)} pairs at {fit_long_edge} px")
        table = np.stack(workers.map(_row_task, [(i, grid, fit_long_edge, seed) for i in range(len(pairs))]))
        total = table.sum(0)
        best_all = int(np.argmax(total))
        held_out = [int(np.argmax(total - table[i])) for i in range(len(pairs))]  # best on the other pairs
        say("scoring each pair at full size with the style fitted without it")
        exact = workers.map(_exact_task, [(i, model, name, {"look": styles[held_out[i]], "fitted": styles[best_all]})
                                          for i in range(len(pairs))])
    rows = [{"pair": p.name, "input": e["input"], "natural": e["natural"], "look": e["look"],
             "style": styles[held_out[i]].to_dict()} for i, (p, e) in enumerate(zip(pairs, exact, strict=True))]
    fitted = float(np.mean([e["fitted"] for e in exact]))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("input", "natural", "look")}
    prov = {"pairs": len(pairs), "loo_psnr": round(mean["look"], 3), "natural_psnr": round(mean["natural"], 3),
            "input_psnr": round(mean["input"], 3), "fitted_psnr": round(fitted, 3),
            "wins_vs_natural": sum(r["look"] > r["natural"] for r in rows), "model": natural.model_id,
            "fit_long_edge": fit_long_edge, "grid": {k: list(v) if k != "brackets" else [list(b) for b in v]
                                                      for k, v in dataclasses.asdict(grid).items()},
            "version": 1, **(provenance or {})}
    return LookFit(Look(name, styles[best_all], prov), rows, mean["input"], mean["natural"], mean["look"], fitted,
                   grid)
