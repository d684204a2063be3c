"""The README's RAW picture: highlights of an over-exposed camera RAW file, as shot and pulled back by -1 EV.

Usage: ``python scripts/make_raw_figure.py [--out docs/images/raw_highlights.jpg] [--raw FILE]`` (needs rawpy and
``../shared/data/raw``). Columns: the default rendering (the RAW as shot, 8-bit), -1 EV applied to that 8-bit
rendering (all a JPEG allows: blown areas turn flat grey), -1 EV applied to the RAW's linear data
(``deepexposure render shot.CRW --ev -1 --renderer local``), and the ``rolloff`` renderer at EV 0. Each tile gives
the share of pixels with a channel at 255.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from deepexposure.image.color import apply_ev
from deepexposure.image.io import from_float, read_photo, write_photo
from deepexposure.image.raw import render_photo
from deepexposure.image.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data" / "raw" / "canon_powershot_s40_CRW_0119.CRW"


def _tile(srgb: np.ndarray, label: str, width: int = 480) -> np.ndarray:
    img = from_float(srgb, 8)
    blown = (img.max(axis=2) == 255).mean()
    h = int(round(img.shape[0] * width / img.shape[1]))
    img = np.ascontiguousarray(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
    cv2.rectangle(img, (0, 0), (width, 18), (0, 0, 0), -1)
    cv2.putText(img, f"{label}: {100 * blown:.1f}% blown", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "raw_highlights.jpg")
    ap.add_argument("--raw", type=Path, default=RAW)
    args = ap.parse_args()
    photo = read_photo(args.raw)
    h, w = photo.pixels.shape[:2]
    crop = (slice(h * 29 // 100, h * 71 // 100), slice(w * 27 // 100, w * 69 // 100))  # the glare on the box
    jpeg8 = from_float(photo.pixels, 8).astype(np.float32) / 255
    tiles = [
        _tile(photo.pixels[crop], "RAW as shot (default)"),
        _tile(apply_ev(jpeg8, -1.0)[crop], "-1 EV on the 8-bit image"),
        _tile(render_photo(photo, Recipe(evs=[-1.0], renderer="local"))[crop], "-1 EV on the RAW"),
        _tile(render_photo(photo, Recipe(evs=[1e-6], renderer="local"), renderer="rolloff")[crop], "rolloff, EV 0"),
    ]
    sheet = np.concatenate(tiles, axis=1).astype(np.float32) / 255
    write_photo(args.out, sheet, overwrite=True, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
