"""Regenerate the README's before/after pictures from real photos with the shipped model.

Usage: ``python scripts/make_figures.py [--out docs/images]``. Writes ``before_after.jpg``: one row per photo,
columns = input, fixed-EV fusion (the baseline to beat, EVs -1, +1, +2), the two looks of ``enhance`` (``natural``,
the default, and ``expert``) and the paper's policy (``--model paper``, fusion), each tile labelled with its EVs and
fitted into the same box, so that portrait and landscape photos line up.
Photos: the samples in ``samples/`` plus, when ``../shared/data`` is present, a few more DICM and MSEC photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from deepexposure.evaluation.baselines import FixedFusion
from deepexposure.image.io import from_float, read_photo
from deepexposure.image.render import ENHANCE_RENDERER
from deepexposure.inference.enhance import Enhancer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
EXTRA = ["dicm/12.jpg", "dicm/29.jpg", "msec_examples/flickr/Probably_Okay_photo4_CC_BY_SA_2.0.jpg"]


def _tile(srgb: np.ndarray, label: str, box: tuple[int, int] = (240, 320)) -> np.ndarray:
    """8-bit RGB tile of size ``box`` (height, width): the photo fitted inside (area resampling) on dark grey,
    under an 18-px label bar."""
    img = from_float(srgb, 8)
    bh, bw = box[0] - 18, box[1]
    s = min(bh / img.shape[0], bw / img.shape[1])
    h, w = max(1, int(round(img.shape[0] * s))), max(1, int(round(img.shape[1] * s)))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    tile = np.full((box[0], box[1], 3), 32, np.uint8)
    y0, x0 = 18 + (bh - h) // 2, (bw - w) // 2
    tile[y0:y0 + h, x0:x0 + w] = img
    cv2.putText(tile, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--name", default="before_after.jpg")
    ap.add_argument("--photos", nargs="*", type=Path, default=None, help="photos (default: samples + a few more)")
    args = ap.parse_args()
    photos = args.photos or (sorted((REPO / "samples").glob("*.jpg"))
                             + [SHARED / p for p in EXTRA if (SHARED / p).is_file()])
    columns = {"natural (default)": Enhancer(), "expert": Enhancer(look="expert"),
               f"paper {ENHANCE_RENDERER}": Enhancer("paper")}
    rows = []
    for path in photos:
        src = read_photo(path).pixels
        tiles = [_tile(src, f"input {path.name}"), _tile(FixedFusion()(src), "fixed fusion  EV -1 +1 +2")]
        for r, enh in columns.items():
            out, rec = enh.enhance(src)
            evs = " ".join(f"{e:+.1f}" for e in rec.evs)
            around = "" if not (rec.style or {}).get("bracket") else " fused " + "/".join(
                f"{b:+g}" for b in rec.style["bracket"])
            tiles.append(_tile(out, f"{r}  EV {evs}{around}"))
        rows.append(np.hstack(tiles))
    rows = [np.pad(r, ((0, 4), (0, 0), (0, 0))) for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    dst = args.out / args.name
    cv2.imwrite(str(dst), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(dst)


if __name__ == "__main__":
    main()
