#!/usr/bin/env python
"""Where a policy's error on the paired dev set comes from (preview level, 64x64, the local renderer).

For every pair of ``--pairs`` (default ``data/dev``): the policy's EVs, the per-segment oracle EVs
(``deepexposure.evaluation.baselines.oracle_recipe_evs`` on the 64x64 previews: coordinate descent, 0.5 then 0.1 EV
grids), and the policy's EVs plus the single best global shift per photo (-2..2 EV, 0.1 steps). Each is rendered
on the preview with ``render_local`` and scored with ``deepexposure.evaluation.psnr`` (8-bit, native size). Prints
mean preview PSNR of the three, the area-weighted EV errors, and the fit ``oracle mean EV = a * policy mean EV + b``
(a < 1: the policy shrinks; b: a bias).

Usage: ``python experiments/diagnose_policy.py [--model PATH] [--pairs DIR]`` (default model: the shipped policy, `paper`).
"""

from __future__ import annotations

import argparse

import numpy as np

from deepexposure.data import paired_folder
from deepexposure.evaluation import psnr
from deepexposure.evaluation.baselines import oracle_recipe_evs
from deepexposure.image.io import read_photo
from deepexposure.image.render import render_local
from deepexposure.image.segmentation import PREVIEW_SIZE, make_preview, segment
from deepexposure.inference.enhance import Enhancer

SHIFTS = np.round(np.arange(-2, 2.0001, 0.1), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="paper", help="policy.pt or run folder (default: the shipped policy)")
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
        orc = np.array(oracle_recipe_evs(x, y, lab, renderer="local", long_edge=PREVIEW_SIZE))

        def score(evs: np.ndarray, lab: np.ndarray = lab, x: np.ndarray = x, y: np.ndarray = y) -> float:
            return psnr(render_local(x, [float(e) for e in evs], lab), y, long_edge=None)

        pol.append(score(ev))
        orc_psnr.append(score(orc))
        shift_psnr.append(max(score(ev + s) for s in SHIFTS))
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
