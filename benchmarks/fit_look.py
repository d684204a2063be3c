"""Time of ``deepexposure fit-look`` on 100 pairs of 512 px, end to end, against one ``enhance`` pass over the same
inputs, in one run.

The pairs: the first ``--pairs`` clean photos of ../shared/data (sun_hays80, then urban100, then bsds500/test)
reduced to 512 px long edge, each with a target made by a known look (+0.5 EV, contrast 1.3, saturation 1.15:
the look of tests/test_look_fit.py). Both commands run in a fresh process (interpreter start included), best and
median of ``--repeats``; the reference is ``deepexposure enhance INPUTS -o OUT -j JOBS`` over the same inputs
(one natural-look pass: reading, the model, rendering, writing), and the ratio is fit-look / enhance.
Target (issue 24): fit-look under 30 s on 2 cores.

Usage: ``python benchmarks/fit_look.py [--pairs 100] [--jobs 2] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepexposure.image.io import read_photo, write_photo
from deepexposure.image.look import Look, Style
from deepexposure.image.segmentation import reduce_long_edge
from deepexposure.inference.enhance import Enhancer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KNOWN = Style(ev_offset=0.5, ev_scale=0.0, contrast=1.3, saturation=1.15)
TARGET_S = 30.0


def make_pairs(root: Path, n: int) -> Path:
    files = [f for d in ("sun_hays80", "urban100", "bsds500/test") for f in sorted((SHARED / d).rglob("*"))
             if f.suffix.lower() in (".jpg", ".jpeg", ".png")][:n]
    if len(files) < n:
        raise SystemExit(f"only {len(files)} clean photos found under {SHARED}")
    enh = Enhancer(look=Look("known", KNOWN))
    for i, f in enumerate(files):
        x = np.ascontiguousarray(reduce_long_edge(read_photo(f).pixels, 512), np.float32)
        write_photo(root / "input" / f"p{i:03d}.png", x)
        write_photo(root / "target" / f"p{i:03d}.png", enh.enhance(x)[0])
    return root


def timed(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = [sys.executable, "-m", "deepexposure"]
    with tempfile.TemporaryDirectory() as tmp:
        pairs = make_pairs(Path(tmp) / "pairs", a.pairs)
        look = Path(tmp) / "look.json"
        fit = timed([*exe, "fit-look", str(pairs), "-o", str(look), "-j", str(a.jobs), "--overwrite"], a.repeats)
        style = read_style(look)
        enh = timed([*exe, "enhance", str(pairs / "input"), "-o", str(Path(tmp) / "out"), "-j", str(a.jobs),
                     "--overwrite"], a.repeats)
    print(f"fit-look, {a.pairs} pairs of 512 px, -j {a.jobs}, {os.cpu_count()} cores, best/median of {a.repeats} "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    print("| command | best s | median s | ratio to enhance (median) |")
    print("|---|---:|---:|---:|")
    print(f"| `fit-look` | {min(fit):.1f} | {statistics.median(fit):.1f} | "
          f"{statistics.median(fit) / statistics.median(enh):.2f} |")
    print(f"| `enhance` (reference: one pass over the inputs) | {min(enh):.1f} | {statistics.median(enh):.1f} | 1.00 |")
    print(f"target: fit-look < {TARGET_S:.0f} s: {'met' if statistics.median(fit) < TARGET_S else 'MISSED'}; "
          f"fitted {style} (known: {KNOWN})")


def read_style(path: Path) -> Style:
    from deepexposure.image.look import load_look

    return load_look(path).style


if __name__ == "__main__":
    main()
