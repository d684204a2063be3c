#!/usr/bin/env python
"""Probe: do detail features from a larger thumbnail lower the global-EV error? (docs/learning.md finding 24)

Finding 18 left open whether inputs beyond the 64x64 preview's statistics would help. Here, for every copy, the
degraded 128x128 image (the training copies of ``probe_global_ev.py``, first ``--copies`` of its 24) gives 28 more
features: for each EV of -3..+3 in 0.5 steps, the mean Sobel gradient magnitude of the luminance after that EV
(normalised by its maximum: where the photo's detail becomes visible and where clipping erases it) and the entropy
of its 32-bin luminance histogram, plus the two EVs that maximise them (a gradient-based auto-exposure in the
spirit of Shim et al. 2014). Boosted trees (as learned-global) with and without them; scored like
``probe_global_ev.py`` (dev sets ``data/fam/<set>`` and the real FiveK pairs, dev inputs area-resized to 128 px).

  python experiments/probe_detail_features.py      # ~6 min after probe_global_ev.py has cached its copies
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_global_ev import SHARED, clean_photos, pairs_of, training_copies  # noqa: E402

from deepexposure import data  # noqa: E402
from deepexposure.evaluation.baselines import _f32, oracle_global_ev  # noqa: E402
from deepexposure.evaluation.metrics import psnr  # noqa: E402
from deepexposure.image.color import apply_ev, linear_to_srgb, srgb_to_linear  # noqa: E402
from deepexposure.image.io import read_photo  # noqa: E402
from deepexposure.image.segmentation import make_preview  # noqa: E402
from deepexposure.learning.learned_global import preview_features  # noqa: E402

GRID = np.arange(-3.0, 3.01, 0.5)
_LUMA = np.float32([0.2126, 0.7152, 0.0722])


def detail_features(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB [0,1] -> 28 features: normalised gradient energy and luminance entropy after each EV of
    :data:`GRID`, and the EVs (stops) that maximise each."""
    lin = srgb_to_linear(img)
    grad, ent = [], []
    for e in GRID:
        lum = linear_to_srgb(np.clip(lin * 2.0 ** e, 0, 1)) @ _LUMA
        gx, gy = cv2.Sobel(lum, cv2.CV_32F, 1, 0), cv2.Sobel(lum, cv2.CV_32F, 0, 1)
        grad.append(float(np.mean(np.sqrt(gx * gx + gy * gy))))
        hist = np.histogram(lum, bins=32, range=(0, 1))[0] / lum.size
        hist = hist[hist > 0]
        ent.append(float(-(hist * np.log2(hist)).sum()))
    g, h = np.array(grad), np.array(ent)
    return np.concatenate([g / (g.max() + 1e-6), h, [GRID[np.argmax(g)], GRID[np.argmax(h)]]]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=12, help="copies per photo used (of the 24 cached)")
    ap.add_argument("--cache", default="runs/.cache")
    ap.add_argument("--fam-root", default="data/fam")
    a = ap.parse_args()
    cached = 24
    ev_all = training_copies(cached, 1, Path(a.cache))["ev"]
    big = clean_photos(Path(a.cache))
    cfg = data.DegradeConfig()
    prev, det, ev = [], [], []
    for i in range(len(big)):
        for c in range(a.copies):  # copy (seed 1, i, c) is the one training_copies made: same draw, same target
            y, _ = data.degrade(big[i], data.degradation.image_rng(1, i, c), config=cfg)
            prev.append(make_preview(y))
            det.append(detail_features(y))
            ev.append(ev_all[i * cached + c])
    f51 = np.concatenate([preview_features(np.stack(prev[k:k + 4096])) for k in range(0, len(prev), 4096)])
    fd, ev = np.stack(det), np.array(ev)

    def trees(x: np.ndarray) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0).fit(x, ev)

    m_a, m_b = trees(f51), trees(np.hstack([f51, fd]))
    sets = {"real": pairs_of(SHARED / "fivek_deeplpf") + pairs_of(SHARED / "fivek_extra")}
    sets |= {s: pairs_of(Path(a.fam_root) / s) for s in ("mix", "spatial", "tone", "white_balance", "noise",
                                                          "highlights", "camera_curve", "jpeg")
             if (Path(a.fam_root) / s).is_dir()}
    print(f"{len(ev)} training copies\n\n| set | 51 statistics: EV error / dB | + detail: EV error / dB | wins |")
    print("|---|---:|---:|---:|")
    for name, pairs in sets.items():
        r = []
        for p, q in pairs:
            x, y = _f32(read_photo(p).pixels), _f32(read_photo(q).pixels)
            o = oracle_global_ev(x, y)
            f = preview_features(make_preview(x)[None])
            d = detail_features(make_preview(x, 128))[None]
            ea = float(np.clip(m_a.predict(f)[0], -3, 3))
            eb = float(np.clip(m_b.predict(np.hstack([f, d]))[0], -3, 3))
            r.append((abs(ea - o), abs(eb - o), psnr(apply_ev(x, ea), y), psnr(apply_ev(x, eb), y)))
        r = np.array(r)
        print(f"| {name} ({len(r)}) | {r[:, 0].mean():.3f} / {r[:, 2].mean():.2f} | {r[:, 1].mean():.3f} / "
              f"{r[:, 3].mean():.2f} | {int(np.sum(r[:, 3] > r[:, 2]))} |", flush=True)


if __name__ == "__main__":
    main()
