#!/usr/bin/env python
"""Supervised probe: can per-segment EVs be learned from preview statistics better than one global EV?

Usage::

    python experiments/probe_segment_evs.py runs/.cache/train-<hash>.npz 4000 data/val_mix data/fam/spatial data/fam/tone

``CACHE``: a training-data cache written by ``deepexposure train`` (inputs, labels, targets, has_target at 64x64).
On ``N`` of its inputs with targets it finds the best EV per segment (hard masks, 0.1 EV grid over [-3, 3], squared
error against the clean target in sRGB) and the best global EV, fits boosted trees (as learned-global) for the global
EV from :func:`deepexposure.inference.episode.exposure_features` and a second model for each segment's residual from those plus
11 statistics of the segment (weighted by area), then scores pair folders (first 30 pairs, 384 px long edge, the
``rolloff`` renderer): global EV only, global + residuals, global + half the residuals. docs/learning.md finding 18.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from deepexposure.data import paired_folder
from deepexposure.evaluation import psnr
from deepexposure.image.color import linear_to_srgb, luminance, srgb_to_linear
from deepexposure.image.io import read_photo
from deepexposure.image.render import render_rolloff
from deepexposure.image.segmentation import SEGMENT_DEFAULTS, make_preview, reduce_long_edge, segment
from deepexposure.inference.episode import exposure_features

T = 6
GRID = np.round(np.arange(-3.0, 3.001, 0.1), 2)


def oracle_evs(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best EV per segment (N,T), best global EV (N,), segment areas (N,T) for previews x, targets y (N,H,W,3)."""
    n = len(x)
    lin = srgb_to_linear(x)
    onehot = np.eye(T, dtype=np.float32)[np.minimum(labels, T - 1).reshape(n, -1)]  # (N,P,T)
    seg_err = np.zeros((n, len(GRID), T), np.float32)
    glob_err = np.zeros((n, len(GRID)), np.float32)
    for j, ev in enumerate(GRID):
        out = np.clip(linear_to_srgb(np.clip(lin * 2.0**ev, 0, 1)), 0, 1)
        err = ((out - y) ** 2).sum(-1).reshape(n, -1)
        seg_err[:, j] = np.einsum("np,npt->nt", err, onehot)
        glob_err[:, j] = err.sum(1)
    return GRID[seg_err.argmin(1)], GRID[glob_err.argmin(1)], onehot.sum(1)


def segment_features(x: np.ndarray, labels: np.ndarray, glob: np.ndarray) -> np.ndarray:
    """(N,T,51+11): the photo's 51 statistics + index, area, centroid y/x, mean log2 luminance (absolute and minus the
    photo's), its 10/50/90th percentiles (/4), fractions with max channel >= 250/255 and <= 5/255."""
    n = len(x)
    ly = np.log2(luminance(x) + 2.0**-12).reshape(n, -1)
    mx = x.max(-1).reshape(n, -1)
    lab = labels.reshape(n, -1)
    yy, xx = np.mgrid[0:x.shape[1], 0:x.shape[2]]
    yy, xx = yy.ravel() / x.shape[1], xx.ravel() / x.shape[2]
    photo_mean = ly.mean(1)
    feats = []
    for s in range(T):
        m = lab == s
        cnt = np.maximum(m.sum(1), 1)
        mean = (ly * m).sum(1) / cnt
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty segments: nan percentiles, replaced below
            pct = [np.nan_to_num(np.nanpercentile(np.where(m, ly, np.nan), q, axis=1), nan=-12.0) / 4
                   for q in (10, 50, 90)]
        f = np.stack([np.full(n, s), m.mean(1), (yy * m).sum(1) / cnt, (xx * m).sum(1) / cnt, mean / 4,
                      (mean - photo_mean) / 4, *pct, ((mx >= 250 / 255) & m).sum(1) / cnt,
                      ((mx <= 5 / 255) & m).sum(1) / cnt], 1)
        feats.append(np.concatenate([glob, f], 1))
    return np.stack(feats, 1)


def main(argv: list[str]) -> None:
    cache, n_fit, sets = argv[0], int(argv[1]), argv[2:]
    d = np.load(cache)
    idx = np.flatnonzero(d["has_target"])
    idx = np.sort(np.random.default_rng(0).choice(idx, min(len(idx), n_fit), replace=False))
    x, y, labels = (d["inputs"][idx].astype(np.float32), d["targets"][idx].astype(np.float32),
                    d["labels"][idx].astype(np.int64))
    ev_seg, ev_glob, area = oracle_evs(x, y, labels)
    glob = exposure_features(x)
    seg = segment_features(x, labels, glob)
    valid = area > 0
    tree = dict(max_iter=300, learning_rate=0.05, random_state=0)
    g_model = HistGradientBoostingRegressor(**tree).fit(glob, ev_glob)
    s_model = HistGradientBoostingRegressor(**tree).fit(seg[valid], (ev_seg - ev_glob[:, None])[valid],
                                                        sample_weight=area[valid])
    for folder in sets:
        rows = []
        for p in paired_folder(Path(folder))[:30]:
            src = reduce_long_edge(read_photo(p.input_path).pixels, 384)
            tgt = reduce_long_edge(read_photo(p.target_path).pixels, 384)
            pv = make_preview(src)
            lb = segment(pv, **SEGMENT_DEFAULTS)
            n = int(lb.max()) + 1
            g = exposure_features(pv[None])
            gev = float(g_model.predict(g)[0])
            res = s_model.predict(segment_features(pv[None], lb[None], g)[0, :n])
            rows.append([psnr(render_rolloff(src, [gev] * n, lb), tgt),
                         psnr(render_rolloff(src, list(gev + res), lb), tgt),
                         psnr(render_rolloff(src, list(gev + 0.5 * res), lb), tgt)])
        r = np.array(rows)
        print(f"{folder}: global {r[:, 0].mean():.2f}  + residuals {r[:, 1].mean():.2f}  + half {r[:, 2].mean():.2f}"
              f"  (residuals win {(r[:, 1] > r[:, 0]).sum()}/{len(r)})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
