#!/usr/bin/env python
"""Where a policy's error on the paired dev set comes from (preview level, 64x64, hard segment masks).

For every pair of ``--pairs`` (default ``data/dev``): the policy's EVs, the per-segment oracle EVs (grid search,
0.05 EV steps, minimising the MSE to the target preview inside each segment), and the policy's EVs plus the single
best global shift per photo (-2..2 EV, 0.1 steps). Prints mean preview PSNR of the three, the area-weighted EV
errors, and the fit ``oracle mean EV = a * policy mean EV + b`` (a < 1: the policy shrinks; b: a bias).

Usage: ``python scripts/diagnose_policy.py [--model PATH] [--pairs DIR]`` (default model: the shipped one).
"""

from __future__ import annotations

import argparse

import numpy as np

from deepexposure.color import apply_ev
from deepexposure.data import paired_folder
from deepexposure.enhance import Enhancer
from deepexposure.io import read_photo
from deepexposure.segmentation import make_preview, segment

GRID = np.round(np.arange(-4, 4.0001, 0.05), 2)
SHIFTS = np.round(np.arange(-2, 2.0001, 0.1), 2)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of float [0,1] images, joint MSE, peak 1 (= 255 on the 0-255 scale)."""
    return float(10 * np.log10(1 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="policy.pt or run folder (default: the shipped model)")
    ap.add_argument("--pairs", default="data/dev", help="paired folder with input/ and target/")
    args = ap.parse_args()
    enh = Enhancer(args.model)
    pol, orc_psnr, shift_psnr, abs_err, signed, pol_mean, orc_mean = [], [], [], [], [], [], []
    for pair in paired_folder(args.pairs):
        x = make_preview(read_photo(pair.input_path).pixels)
        y = make_preview(read_photo(pair.target_path).pixels)
        lab = segment(x, **enh.segmentation)
        n = int(lab.max()) + 1
        ev = enh.policy.predict(x, lab).astype(np.float64)
        orc = np.array([GRID[int(np.argmin([np.mean((apply_ev(x[lab == k], g) - y[lab == k]) ** 2) for g in GRID]))]
                        for k in range(n)])

        def render(evs: np.ndarray, lab: np.ndarray = lab, x: np.ndarray = x) -> np.ndarray:
            return apply_ev(x, np.asarray(evs, np.float32)[lab][..., None])

        pol.append(_psnr(render(ev), y))
        orc_psnr.append(_psnr(render(orc), y))
        shift_psnr.append(max(_psnr(render(ev + s), y) for s in SHIFTS))
        w = np.bincount(lab.ravel(), minlength=n) / lab.size
        abs_err.append(float(np.sum(w * np.abs(ev - orc))))
        signed.append(float(np.sum(w * (ev - orc))))
        pol_mean.append(float(np.sum(w * ev)))
        orc_mean.append(float(np.sum(w * orc)))
    a, b = np.polyfit(pol_mean, orc_mean, 1)
    print(f"pairs: {len(pol)}; model: {enh.policy.model_id}")
    print(f"preview PSNR: policy {np.mean(pol):.2f} dB, per-segment oracle {np.mean(orc_psnr):.2f} dB, "
          f"policy + best global shift per photo {np.mean(shift_psnr):.2f} dB")
    print(f"area-weighted |EV error| {np.mean(abs_err):.3f}; signed mean {np.mean(signed):+.3f}, "
          f"std over photos {np.std(signed):.3f}")
    print(f"oracle mean EV = {a:.2f} * policy mean EV {b:+.2f}; correlation {np.corrcoef(pol_mean, orc_mean)[0, 1]:.3f}")


if __name__ == "__main__":
    main()
