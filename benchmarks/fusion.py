"""Benchmark of the fusion renderer against OpenCV's MergeMertens on a 12-megapixel photo.

    python benchmarks/fusion.py [--photo PATH] [--megapixels 12] [--repeat 3]

Six exposures: the original plus EV -2, -1, +1, +2, +3 of a shared photo upscaled (bicubic) to the requested size
(4000x3000 for 12 MP at 4:3). Methods, each timed and memory-measured in its own fresh subprocess (peak RSS = VmHWM
of the child, reported both in total and above the child's baseline after loading its inputs):

* ``opencv``: ``cv2.createMergeMertens(1, 1, 1).process`` on the six exposures as uint8 (made beforehand, not
  timed: OpenCV needs them materialised; its baseline includes them);
* ``ours exact``: ``fuse_exposures(photo_uint8, evs)`` (exposures generated inside, by lookup table, and timed);
* ``ours exact (same uint8)``: ``mertens_fuse`` on OpenCV's six uint8 exposures (for the PSNR against OpenCV);
* ``ours fast``: ``fuse_exposures(..., fast=True)`` (long edge 1024, guided transfer).

The machine may be shared, so the methods run in ``--repeat`` interleaved rounds (one child per method per round,
OpenCV first in each round): wall times are medians over the rounds, and the speed-up is the median over rounds
of OpenCV's time divided by ours in the same round. PSNRs (dB, on [0, 1]) between the methods' outputs
(OpenCV's clipped to [0, 1]) are computed in the parent from the outputs the children save. The last lines say
whether the targets of issue 12 are met (exact >= 3x faster than OpenCV at <= 1/4 of its peak memory above
the inputs; fast mode >= 38 dB from exact) and, where not, by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO.parent / "shared" / "data" / "msec_examples" / "flickr" / "Roland_Tanglao_CC_BY_2.0.jpg"
EVS = [-2.0, -1.0, 1.0, 2.0, 3.0]


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load(photo: Path, megapixels: float) -> np.ndarray:
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"cannot read {photo}")
    h, w = bgr.shape[:2]
    f = (megapixels * 1e6 / (h * w)) ** 0.5
    big = cv2.resize(bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[:, :, ::-1])


def _uint8_exposures(img: np.ndarray) -> list[np.ndarray]:
    from deepexposure.image.color import apply_ev

    ident = np.arange(256, dtype=np.float32) / 255
    return [img] + [cv2.LUT(img, np.round(apply_ev(ident, ev) * 255).astype(np.uint8)) for ev in EVS]


def child(method: str, photo: Path, megapixels: float, out: Path) -> None:
    """Run one method once in this (fresh) process; print JSON with its time, memory and CPU time."""
    img = _load(photo, megapixels)
    inputs = _uint8_exposures(img) if method in ("opencv", "ours_u8") else None
    base = _vm_hwm_mb()
    t, c = time.perf_counter(), time.process_time()
    if method == "opencv":
        res = cv2.createMergeMertens(1.0, 1.0, 1.0).process(inputs)
    elif method == "ours_u8":
        from deepexposure.image.fusion import mertens_fuse

        res = mertens_fuse(inputs)
    else:
        from deepexposure.image.fusion import fuse_exposures

        res = fuse_exposures(img, EVS, fast=method == "ours_fast")
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = _vm_hwm_mb()
    np.save(out, np.clip(res, 0, 1).astype(np.float32))
    print(json.dumps({"method": method, "time_s": wall, "cpu_s": cpu, "peak_mb": peak, "baseline_mb": base,
                      "shape": list(img.shape)}))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.photo, args.megapixels, args.out)
        return

    methods = [("opencv", "cv2.createMergeMertens(1,1,1)"), ("ours_exact", "ours exact (fuse_exposures)"),
               ("ours_u8", "ours exact (same uint8 in)"), ("ours_fast", "ours fast (1024 + guided)")]
    runs: dict[str, list[dict]] = {key: [] for key, _ in methods}
    outs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(max(1, args.repeat)):
            for key, _ in methods:
                path = Path(tmp) / f"{key}.npy"
                cmd = [sys.executable, __file__, "--child", key, "--photo", str(args.photo), "--megapixels",
                       str(args.megapixels), "--out", str(path)]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[key].append(json.loads(res.stdout.strip().splitlines()[-1]))
                outs[key] = np.load(path)
    med = {key: float(np.median([r["time_s"] for r in rs])) for key, rs in runs.items()}
    speedup = {key: float(np.median([o["time_s"] / r["time_s"] for o, r in zip(runs["opencv"], rs, strict=True)]))
               for key, rs in runs.items()}
    peak = {key: max(r["peak_mb"] for r in rs) for key, rs in runs.items()}
    extra = {key: max(r["peak_mb"] - r["baseline_mb"] for r in rs) for key, rs in runs.items()}
    h, w = runs["opencv"][0]["shape"][:2]
    print(f"\nphoto {args.photo.name} upscaled to {w}x{h} ({w * h / 1e6:.1f} MP); 6 exposures: original + EV "
          f"{', '.join(f'{e:+g}' for e in EVS)}; cv2 threads {cv2.getNumThreads()}; {os.cpu_count()} CPUs; "
          f"median of {args.repeat} interleaved rounds (load average at the end: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})\n")
    print("| method | wall s (median) | all rounds s | CPU s (median) | x faster than OpenCV (same round) | "
          "peak MB (total) | peak MB above inputs | memory vs OpenCV |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label in methods:
        rs = runs[key]
        rounds = " ".join(f"{r['time_s']:.2f}" for r in rs)
        print(f"| {label} | {med[key]:.2f} | {rounds} | "
              f"{np.median([r['cpu_s'] for r in rs]):.2f} | {speedup[key]:.2f} | {peak[key]:.0f} | {extra[key]:.0f} | "
              f"{peak[key] / peak['opencv']:.2f} (total), {extra[key] / extra['opencv']:.2f} (above inputs) |")
    print()
    print(f"PSNR ours (same uint8 in) vs OpenCV: {_psnr(outs['ours_u8'], outs['opencv']):.2f} dB")
    print(f"PSNR ours exact (LUT exposures, not quantised to 8 bits) vs OpenCV: "
          f"{_psnr(outs['ours_exact'], outs['opencv']):.2f} dB")
    fast_db = _psnr(outs['ours_fast'], outs['ours_exact'])
    print(f"PSNR ours fast vs ours exact: {fast_db:.2f} dB")
    print()
    mem = extra["ours_exact"] / extra["opencv"]
    for ok, met, missed in (
            (speedup["ours_exact"] >= 3.0, f"exact >= 3x faster than OpenCV: met ({speedup['ours_exact']:.2f}x)",
             f"exact >= 3x faster than OpenCV: MISSED, {speedup['ours_exact']:.2f}x "
             f"({3.0 / speedup['ours_exact']:.2f}x too slow)"),
            (mem <= 0.25, f"exact memory <= 1/4 of OpenCV's (above inputs): met ({mem:.2f})",
             f"exact memory <= 1/4 of OpenCV's (above inputs): MISSED, {mem:.2f} ({mem / 0.25:.2f}x the budget)"),
            (fast_db >= 38.0, f"fast mode >= 38 dB from exact: met ({fast_db:.1f} dB)",
             f"fast mode >= 38 dB from exact: MISSED by {38.0 - fast_db:.1f} dB ({fast_db:.1f} dB; see the "
             f"deepexposure.image.fusion module doc for why)")):
        print("target " + (met if ok else missed))


if __name__ == "__main__":
    main()
