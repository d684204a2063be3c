"""End-to-end benchmark of ``enhance`` (read -> preview/segment/policy -> fusion render -> write) on 12 and 24 MP.

Prints a table measured in one run: wall time and peak memory (VmHWM of a fresh child process, so the import of
torch etc. is included in memory but not in time) of

* ``deepexposure`` — ``Enhancer().enhance_photo`` with the shipped model, fusion renderer, + JPEG read/write;
* ``local`` — the same with ``renderer="local"`` (each EV inside its feathered segment mask, no fusion);
* ``rolloff`` / ``balanced`` — the same with those renderers (local + highlight roll-off; + a fused +-0.5 EV bracket);
* ``opencv`` — the reference: the same read/write around ``cv2.createMergeMertens(1, 1, 1).process`` on the
  original plus the same EVs (exposures made with the same LUT), i.e. the paper's test stage done with OpenCV.

Usage: ``python benchmarks/enhance.py [--photo PATH] [--sizes 12 24] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO / "samples" / "dicm_34.jpg"


def _child(method: str, src: str, dst: str, repeat: int) -> None:
    """Runs in a fresh process: time `repeat` runs, report the best wall time and the peak RSS."""
    import numpy as np

    from deepexposure.enhance import Enhancer
    from deepexposure.io import read_photo, write_photo

    enhancer = Enhancer(renderer=method if method in ("local", "rolloff", "balanced") else "fusion")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        photo = read_photo(src)
        if method in ("deepexposure", "local", "rolloff", "balanced"):
            out, recipe = enhancer.enhance_photo(photo)
        else:
            import cv2

            from deepexposure.color import apply_ev
            from deepexposure.io import from_float

            recipe = enhancer.recipe(photo.pixels)
            imgs = [from_float(photo.pixels, 8)]
            lut_in = np.arange(256, dtype=np.float32) / 255.0
            for ev in recipe.evs:
                lut = from_float(apply_ev(lut_in[:, None], ev)[:, 0], 8)
                imgs.append(lut[imgs[0]])
            fused = cv2.createMergeMertens(1.0, 1.0, 1.0).process(imgs)
            out = photo.__class__(**{**photo.__dict__, "pixels": np.clip(fused, 0, 1).astype(np.float32)})
        write_photo(dst, out, overwrite=True)
        times.append(time.perf_counter() - t0)
    peak_kb = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    print(json.dumps({"time": min(times), "peak_mb": peak_kb / 1024, "evs": len(recipe.evs)}))


def _run(method: str, src: Path, dst: Path, repeat: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(src), str(dst), str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_mb() -> float:
    """Peak RSS of a child that only imports the package and loads the model (subtracted for 'extra' memory)."""
    code = ("from deepexposure.enhance import Enhancer; Enhancer(); import pathlib;"
            "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0])")
    line = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--sizes", type=float, nargs="+", default=[12, 24], help="megapixels")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    import cv2

    base = _baseline_mb()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        img = cv2.imread(str(args.photo))
        for mp in args.sizes:
            w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
            h = int(round(w * 3 / 4))
            src = Path(tmp) / f"in_{mp:g}mp.jpg"
            cv2.imwrite(str(src), cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, 95])
            res = {m: _run(m, src, Path(tmp) / f"out_{m}_{mp:g}.jpg", args.repeat)
                   for m in ("deepexposure", "local", "rolloff", "balanced", "opencv")}
            rows.append((f"{w}x{h} ({w * h / 1e6:.1f} MP)", res))
    print(f"photo: {args.photo.name}; peak memory includes {base:.0f} MB of interpreter+torch+model "
          f"(measured alone); best of {args.repeat}")
    print("| size | renderer | EVs | wall s | OpenCV reference s | speed-up | peak MB | OpenCV peak MB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        o = r["opencv"]
        for label, key in (("fusion (default)", "deepexposure"), ("local", "local"), ("rolloff", "rolloff"),
                           ("balanced", "balanced")):
            d = r[key]
            print(f"| {name} | {label} | {d['evs']} | {d['time']:.2f} | {o['time']:.2f} | {o['time'] / d['time']:.1f}x | "
                  f"{d['peak_mb']:.0f} (+{d['peak_mb'] - base:.0f}) | {o['peak_mb']:.0f} (+{o['peak_mb'] - base:.0f}) | "
                  f"{(d['peak_mb'] - base) / max(o['peak_mb'] - base, 1):.2f} |")


if __name__ == "__main__":
    main()
