#!/usr/bin/env python
"""Probe: do exposure statistics of a larger thumbnail predict the global EV better than those of the 64 px preview?

Usage: ``python experiments/probe_thumbnail_size.py [VAL_PAIRS]`` (default ``data/val_mix``; ~4 min; needs
``../shared/data``). The clean training photos of the runs (bsds500 train+val, sun_hays80, urban100,
imagenet_sample) are reduced to 256 px, degraded 3 times each with the default family mix (seed 0), and the best
global EV of each copy is found at 64 px; boosted trees (as learned-global) are fitted on
:func:`deepexposure.inference.episode.exposure_features` of the same degraded copies at 64, 128 and 256 px (and 64 + 256), then
scored on the validation pairs: mean |EV - oracle EV| and PSNR with the EV applied by ``rolloff`` at 384 px.
docs/learning.md finding 20 (val_mix, fam/spatial and fam/tone).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from deepexposure.data import degraded_previews, load_previews, paired_folder
from deepexposure.evaluation import psnr
from deepexposure.image.io import read_photo
from deepexposure.image.render import render_rolloff
from deepexposure.image.segmentation import make_preview, reduce_long_edge
from deepexposure.inference.episode import exposure_features
from deepexposure.learning.trainer import best_global_ev

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SIZES = (64, 128, 256)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    return np.stack([make_preview(i, size) for i in images])


def _best_ev(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
    return best_global_ev(nchw(x), nchw(y)).numpy()


def _features(images: np.ndarray) -> dict[str, np.ndarray]:
    f = {str(s): np.concatenate([exposure_features(_resized(images[i:i + 256], s))
                                 for i in range(0, len(images), 256)]) for s in SIZES}
    f["64+256"] = np.concatenate([f["64"], f["256"]], axis=1)
    return f


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore")
    val = Path(argv[0]) if argv else Path("data/val_mix")
    clean, _ = load_previews([SHARED / "bsds500/train", SHARED / "bsds500/val", SHARED / "sun_hays80",
                              SHARED / "urban100", SHARED / "imagenet_sample"], size=256, progress=False)
    x = degraded_previews(clean, seed=0, copies=3)
    ev = _best_ev(_resized(x, 64), _resized(np.repeat(clean, 3, axis=0), 64))
    models = {k: HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0).fit(f, ev)
              for k, f in _features(x).items()}
    err: dict[str, list[float]] = {k: [] for k in models}
    score: dict[str, list[float]] = {k: [] for k in models}
    for p in paired_folder(val):
        src = reduce_long_edge(read_photo(p.input_path).pixels, 384)
        tgt = reduce_long_edge(read_photo(p.target_path).pixels, 384)
        feats = _features(src[None])
        oracle = float(_best_ev(make_preview(src, 64)[None], make_preview(tgt, 64)[None])[0])
        for k, m in models.items():
            g = float(m.predict(feats[k])[0])
            err[k].append(abs(g - oracle))
            score[k].append(psnr(render_rolloff(src, [g], None), tgt))
    print(f"{len(clean)} clean photos x 3 copies; {len(err['64'])} validation pairs from {val}")
    for k in models:
        print(f"statistics at {k:>6} px: EV error {np.mean(err[k]):.3f}, PSNR (rolloff) {np.mean(score[k]):.2f} dB")


if __name__ == "__main__":
    main(sys.argv[1:])
