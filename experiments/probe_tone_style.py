#!/usr/bin/env python
"""Probe: what expert C does on the real FiveK pairs, and whether our data can teach it (learning.md finding 23).

1. **Oracle tone.** Per real pair, the best global EV alone, and the best (EV, contrast) of the ``tone`` family's
   own form (linear light times ``2**ev``, then ``0.18 * (x / 0.18) ** c``), fitted at 256 px by Nelder-Mead.
2. **Learned contrast.** Boosted trees (as learned-global) for log2 contrast (target: the inverse of the copy's
   ``tone`` contrast, 1 when the family is off) and for the EV after that correction, on the copies of
   ``probe_global_ev.py``; scored on the real pairs and the dev sets against the EV-only trees.
3. **A few expert pairs.** Two-fold cross-validation on the real pairs: the EV-only trees trained on the synthetic
   copies plus one real set (40 random crops/flips per pair, target = the oracle EV against expert C, sample weight
   W), scored on the other set.

  python experiments/probe_tone_style.py            # after probe_global_ev.py has cached its copies (~10 min)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.optimize import minimize
from sklearn.ensemble import HistGradientBoostingRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_global_ev import SHARED, best_ev_linear, clean_photos, features, nchw, pairs_of, training_copies  # noqa: E402

from deepexposure import data  # noqa: E402
from deepexposure.evaluation.baselines import FixedFusion, _f32, oracle_global_ev  # noqa: E402
from deepexposure.evaluation.metrics import psnr  # noqa: E402
from deepexposure.image.color import apply_ev, linear_to_srgb, srgb_to_linear  # noqa: E402
from deepexposure.image.io import read_photo  # noqa: E402
from deepexposure.image.segmentation import make_preview  # noqa: E402
from deepexposure.learning.env import srgb_to_linear_torch  # noqa: E402
from deepexposure.learning.learned_global import preview_features  # noqa: E402


def tone(x: np.ndarray, ev: float, c: float) -> np.ndarray:
    """sRGB [0,1] -> EV in linear light, then log-luminance contrast ``c`` around 0.18 (the tone family's form)."""
    lin = 0.18 * np.power(np.maximum(srgb_to_linear(x) * 2.0 ** ev, 1e-6) / 0.18, c)
    return linear_to_srgb(np.clip(lin, 0, 1))


def small(a: np.ndarray, long_edge: int = 256) -> np.ndarray:
    h, w = a.shape[:2]
    s = long_edge / max(h, w)
    return cv2.resize(a, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def trees() -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)


def load(pairs: list) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(p.stem, _f32(read_photo(p).pixels), _f32(read_photo(q).pixels)) for p, q in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", default="runs/.cache")
    ap.add_argument("--fam-root", default="data/fam")
    a = ap.parse_args()
    real_a, real_b = load(pairs_of(SHARED / "fivek_deeplpf")), load(pairs_of(SHARED / "fivek_extra"))
    real = real_a + real_b
    ff = FixedFusion()

    print("## 1. Oracle tone on the real pairs\n\n| pair | oracle EV | PSNR | EV, contrast | PSNR | fixed fusion |")
    print("|---|---:|---:|---|---:|---:|")
    rows = []
    for name, x, y in real:
        o = oracle_global_ev(x, y)
        xs, ys = small(x), small(y)
        r = minimize(lambda q, xs=xs, ys=ys: np.mean((tone(xs, *q) - ys) ** 2), [o, 1.0], method="Nelder-Mead")
        rows.append((o, *r.x, psnr(apply_ev(x, o), y), psnr(tone(x, *r.x), y), psnr(ff(x), y)))
        print(f"| {name} | {o:+.2f} | {rows[-1][3]:.2f} | {r.x[0]:+.2f}, {r.x[1]:.2f} | {rows[-1][4]:.2f} | "
              f"{rows[-1][5]:.2f} |")
    m = np.mean(rows, 0)
    print(f"| mean | {m[0]:+.2f} | {m[3]:.2f} | {m[1]:+.2f}, {m[2]:.2f} | {m[4]:.2f} | {m[5]:.2f} |\n")

    tr = training_copies(a.copies, a.seed, Path(a.cache))
    x, ev = tr["x"], tr["ev"]
    f = features(x)
    cfg = data.DegradeConfig()
    contrast = np.ones(len(x), np.float32)
    for i in range(len(x) // a.copies):
        for c in range(a.copies):
            p = data.degradation._draw_params(data.degradation.image_rng(a.seed, i, c), cfg)
            if p["tone_contrast"] is not None:
                contrast[i * a.copies + c] = 1 / p["tone_contrast"]
    # EV target after the contrast correction: best EV of 0.18 * (lin / 0.18) ** c * 2**ev, i.e. contrast first
    lin = srgb_to_linear_torch(nchw(x))
    lin = 0.18 * (lin.clamp_min(1e-6) / 0.18) ** torch.from_numpy(contrast).view(-1, 1, 1, 1)
    ev_c = best_ev_linear(lin, nchw(np.repeat(np.stack([make_preview(b) for b in clean_photos(Path(a.cache))]), a.copies, 0))).numpy()
    m_ev, m_evc, m_c = trees().fit(f, ev), trees().fit(f, ev_c), trees().fit(f, np.log2(contrast))

    def tone_after_contrast(img: np.ndarray, ev_: float, c: float) -> np.ndarray:
        lin_ = 0.18 * np.power(np.maximum(srgb_to_linear(img), 1e-6) / 0.18, c) * 2.0 ** ev_
        return linear_to_srgb(np.clip(lin_, 0, 1))

    print("## 2. Learned contrast (PSNR dB; wins of EV + contrast over EV only)\n")
    print("| set | EV only | EV + contrast | wins | mean predicted contrast |\n|---|---:|---:|---:|---:|")
    sets = {"real": real, **{s: load(pairs_of(Path(a.fam_root) / s)) for s in ("mix", "tone", "spatial",
                                                                             "highlights", "camera_curve", "noise")
                             if (Path(a.fam_root) / s).is_dir()}}
    for s, pairs in sets.items():
        r = []
        for _, xi, yi in pairs:
            fi = preview_features(make_preview(xi)[None])
            e0 = float(np.clip(m_ev.predict(fi)[0], -3, 3))
            e1, c1 = float(np.clip(m_evc.predict(fi)[0], -3, 3)), float(2 ** m_c.predict(fi)[0])
            r.append((psnr(apply_ev(xi, e0), yi), psnr(tone_after_contrast(xi, e1, c1), yi), c1))
        r = np.array(r)
        print(f"| {s} ({len(r)}) | {r[:, 0].mean():.2f} | {r[:, 1].mean():.2f} | {np.sum(r[:, 1] > r[:, 0])} | "
              f"{r[:, 2].mean():.2f} |", flush=True)

    print("\n## 3. Two-fold CV with real expert pairs added to the training data (PSNR dB on the other set)\n")
    rng = np.random.default_rng(0)
    weights = (0, 1, 10, 50)
    print("| train on -> test | " + " | ".join(f"W={w}" for w in weights) + " | fixed fusion | input |")
    print("|---|" + "---:|" * (len(weights) + 2))
    for train, test, name in ((real_a, real_b, "deeplpf -> extra"), (real_b, real_a, "extra -> deeplpf")):
        fs, ts = [], []
        for _, xi, yi in train:
            h, w = xi.shape[:2]
            for _ in range(40):
                s = rng.uniform(0.7, 1.0)
                ch, cw = int(h * s), int(w * s)
                i0, j0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                xc, yc = xi[i0:i0 + ch, j0:j0 + cw], yi[i0:i0 + ch, j0:j0 + cw]
                if rng.random() < 0.5:
                    xc, yc = xc[:, ::-1], yc[:, ::-1]
                xc, yc = np.ascontiguousarray(xc), np.ascontiguousarray(yc)
                fs.append(preview_features(make_preview(xc)[None])[0])
                ts.append(oracle_global_ev(xc, yc, long_edge=128))
        cells = []
        for wgt in weights:
            if wgt == 0:
                mdl = m_ev
            else:
                mdl = trees().fit(np.concatenate([f, fs]), np.concatenate([ev, ts]),
                                  sample_weight=np.concatenate([np.ones(len(f)), np.full(len(fs), wgt)]))
            cells.append(np.mean([psnr(apply_ev(xi, float(np.clip(mdl.predict(
                preview_features(make_preview(xi)[None]))[0], -3, 3))), yi) for _, xi, yi in test]))
        cells += [np.mean([psnr(ff(xi), yi) for _, xi, yi in test]), np.mean([psnr(xi, yi) for _, xi, yi in test])]
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
