#!/usr/bin/env python
"""Measure the highlight guard (``render.guard_highlights``) of ``enhance`` (docs/learning.md finding 25).

For each model (default: the shipped one and ``runs/dgm`` when present) and each ``--renderer`` (default
``rolloff``): mean PSNR (8-bit, native size) with and without the guard on the 14 real FiveK pairs and the dev
sets ``data/fam/<set>``, pairs where the guard wins / loses (by more than 0.01 dB), and the share of blown pixels
(largest channel rounds to >= 254) on the README samples and DICM.

  python experiments/probe_highlight_guard.py            # ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deepexposure.data import paired_folder
from deepexposure.evaluation.baselines import _f32
from deepexposure.evaluation.metrics import psnr
from deepexposure.image.io import iter_photo_paths, read_photo
from deepexposure.inference.enhance import Enhancer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SETS = ("mix", "spatial", "tone", "white_balance", "noise", "highlights", "camera_curve", "jpeg")


def pairs_of(d: Path) -> list[tuple[Path, Path]]:
    """(input, target) paths of a paired folder (``data.paired_folder``)."""
    return [(p.input_path, p.target_path) for p in paired_folder(d)]


def blown(a: np.ndarray) -> float:
    """Percent of pixels whose largest channel rounds to 254 or 255 (8-bit)."""
    return 100.0 * float(np.mean(np.round(a * 255).max(axis=2) >= 254))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model(s) (default: shipped, runs/dgm)")
    ap.add_argument("--renderer", action="append", default=None)
    ap.add_argument("--fam-root", default="data/fam")
    a = ap.parse_args()
    models = a.model or [None] + (["runs/dgm"] if (REPO / "runs" / "dgm" / "policy.pt").is_file() else [])
    renderers = a.renderer or ["rolloff"]
    sets = {"real": pairs_of(SHARED / "fivek_deeplpf") + pairs_of(SHARED / "fivek_extra")}
    sets |= {s: pairs_of(Path(a.fam_root) / s) for s in SETS if (Path(a.fam_root) / s).is_dir()}
    cache = {name: [(_f32(read_photo(p).pixels), _f32(read_photo(q).pixels)) for p, q in pairs]
             for name, pairs in sets.items()}
    looks = sorted((REPO / "samples").glob("*.jpg")) + sorted(iter_photo_paths(SHARED / "dicm"))
    for model in models:
        for r in renderers:
            off, on = Enhancer(model, renderer=r, highlight_guard=False), Enhancer(model, renderer=r)
            print(f"\n### {model or 'shipped'}, {r}\n\n| set | without guard | with guard | wins | losses |")
            print("|---|---:|---:|---:|---:|")
            for name, pairs in cache.items():
                d = np.array([(psnr(off.enhance(x)[0], y), psnr(on.enhance(x)[0], y)) for x, y in pairs])
                print(f"| {name} ({len(d)}) | {d[:, 0].mean():.2f} | {d[:, 1].mean():.2f} | "
                      f"{int(np.sum(d[:, 1] > d[:, 0] + 0.01))} | {int(np.sum(d[:, 1] < d[:, 0] - 0.01))} |",
                      flush=True)
            b = np.array([(blown(x), blown(off.enhance(x)[0]), blown(on.enhance(x)[0]))
                          for x in (read_photo(p).pixels for p in looks)])
            worse = int(np.sum(b[:, 1] > b[:, 0] + 1)), int(np.sum(b[:, 2] > b[:, 0] + 1))
            print(f"\nBlown pixels on {len(b)} photos (README samples + DICM): as shot {b[:, 0].mean():.2f}%, "
                  f"without guard {b[:, 1].mean():.2f}%, with guard {b[:, 2].mean():.2f}%; photos with > 1 point "
                  f"more blown than as shot: {worse[0]} without, {worse[1]} with")


if __name__ == "__main__":
    main()
