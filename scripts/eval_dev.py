#!/usr/bin/env python
"""PSNR table on the paired dev set (data/dev/{input,target}): input, fixed-exposure fusion, policies, oracles.

Measured at the dev set's own resolution (long edge <= 512 px; bsds500/test pairs are 481x321). PSNR uses the joint
MSE over all pixels and channels on the 0-255 scale (float, no rounding). Rows:

* ``input``: the degraded input as it is;
* ``fusion fixed -1,+1,+2``: render_fusion(input, [-1, 1, 2]) (Mertens fusion with the original);
* ``NAME local`` / ``NAME fusion``: a policy's EVs (preview 64x64, segmented with the policy's parameters) rendered
  with render_local / render_fusion;
* ``oracle global EV``: the single EV in -4..4 (0.1 steps) with the best PSNR against the target, per image;
* ``oracle per-segment EV (local)``: per segment, the EV in -4..4 (0.1 steps) minimising the MSE to the target
  preview inside the segment (hard masks, 64x64), then render_local at full size: a ceiling for the local renderer.

Example:
  python scripts/eval_dev.py --policy DE-I=runs/best/policy.pt --policy DE-II=runs/de2/policy.pt --out table.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from deepexposure.color import apply_ev
from deepexposure.data import paired_folder
from deepexposure.io import read_photo
from deepexposure.render import render_fusion, render_local
from deepexposure.segmentation import SEGMENT_DEFAULTS, make_preview, segment

EV_GRID = np.round(np.arange(-4.0, 4.0001, 0.1), 2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of float sRGB [0,1] images on the 0-255 scale (joint MSE over pixels and channels)."""
    mse = float(np.mean((np.asarray(a, np.float64) * 255 - np.asarray(b, np.float64) * 255) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def oracle_segment_evs(inp_prev: np.ndarray, tgt_prev: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per segment, the grid EV minimising the preview MSE inside it."""
    n = int(labels.max()) + 1
    errs = np.stack([((apply_ev(inp_prev, e) - tgt_prev) ** 2).sum(-1) for e in EV_GRID])  # (G,h,w)
    out = []
    for s in range(n):
        m = labels == s
        out.append(float(EV_GRID[np.argmin(errs[:, m].sum(1))]))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", default="data/dev", help="folder with input/ and target/ (default data/dev)")
    ap.add_argument("--policy", action="append", default=[], help="NAME=PATH of a policy.pt (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N pairs (sorted by stem)")
    ap.add_argument("--no-oracle", action="store_true", help="skip the oracle rows")
    ap.add_argument("--out", default=None, help="write the table (markdown) here, and NAME.json beside it")
    args = ap.parse_args(argv)

    from deepexposure.policy import Policy

    policies = {}
    for spec in args.policy:
        name, _, path = spec.partition("=")
        policies[name] = Policy.load(path, device="cpu")
    pairs = paired_folder(args.dev)[: args.limit]
    rows: dict[str, list[float]] = {"input": [], "fusion fixed -1,+1,+2": []}
    evs_log: dict[str, list[list[float]]] = {}
    t0 = time.time()
    for pair in pairs:
        inp = read_photo(pair.input_path).pixels
        tgt = read_photo(pair.target_path).pixels
        rows["input"].append(psnr(inp, tgt))
        rows["fusion fixed -1,+1,+2"].append(psnr(render_fusion(inp, [-1.0, 1.0, 2.0]), tgt))
        prev = make_preview(inp)
        for name, pol in policies.items():
            seg = pol.config.get("segmentation", SEGMENT_DEFAULTS)
            labels = segment(prev, **seg)
            evs = [float(e) for e in pol.predict(prev, labels)]
            evs_log.setdefault(name, []).append(evs)
            rows.setdefault(f"{name} local", []).append(psnr(render_local(inp, evs, labels), tgt))
            rows.setdefault(f"{name} fusion", []).append(psnr(render_fusion(inp, evs), tgt))
        if not args.no_oracle:
            best = max(psnr(apply_ev(inp, e), tgt) for e in EV_GRID[::2])  # 0.2 EV steps at full size
            rows.setdefault("oracle global EV", []).append(best)
            labels = segment(prev, **SEGMENT_DEFAULTS)
            oevs = oracle_segment_evs(prev, make_preview(tgt), labels)
            rows.setdefault("oracle per-segment EV (local)", []).append(psnr(render_local(inp, oevs, labels), tgt))
    base = float(np.mean(rows["fusion fixed -1,+1,+2"]))
    lines = ["| method | mean PSNR (dB) | vs fixed fusion (dB) |", "|---|---|---|"]
    summary = {}
    for name, vals in rows.items():
        m = float(np.mean(vals))
        summary[name] = m
        lines.append(f"| {name} | {m:.2f} | {m - base:+.2f} |")
    table = "\n".join(lines)
    print(f"{len(pairs)} pairs from {args.dev}, {time.time() - t0:.0f} s")
    print(table)
    for name, evs in evs_log.items():
        flat = np.concatenate([np.asarray(e) for e in evs])
        print(f"{name}: mean EV {flat.mean():+.2f}, mean |EV| {np.abs(flat).mean():.2f}")
    if args.out:
        Path(args.out).write_text(table + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps({"pairs": len(pairs), "mean_psnr": summary,
                                                                    "per_image": rows}, indent=1))
    return summary


if __name__ == "__main__":
    main()
