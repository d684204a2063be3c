"""The README's "your own look" picture: a look fitted by ``fit-look`` on 13 of expert C's edits, applied to the 14th.

Rows: a pair where the held-out look does well and one where it does badly (by its PSNR against the expert's
edit). Columns: the input, the natural look, the look fitted without that pair, the expert's own edit.
Usage: ``python scripts/make_look_figure.py [--out docs/images/fit_look.jpg]``. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from deepexposure.evaluation.look_fit import fit_look, load_fit_pairs
from deepexposure.image.io import from_float, write_photo
from deepexposure.image.look import Look, Style
from deepexposure.inference.enhance import Enhancer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HEIGHT = 220


def _tile(img: np.ndarray, label: str) -> np.ndarray:
    h, w = img.shape[:2]
    t = cv2.resize(from_float(img, 8), (round(w * HEIGHT / h), HEIGHT), interpolation=cv2.INTER_AREA)
    cv2.rectangle(t, (0, 0), (t.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(t, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images/fit_look.jpg")
    a = ap.parse_args()
    pairs = load_fit_pairs([SHARED / "fivek_deeplpf", SHARED / "fivek_extra"])
    fit = fit_look(pairs, name="held-out", jobs=2)
    order = sorted(range(len(pairs)), key=lambda i: fit.rows[i]["look"] - fit.rows[i]["natural"])
    rows = []
    for i in (order[-3], order[0]):  # a good one (not the very best) and the worst
        p, r = pairs[i], fit.rows[i]
        look = Look("held-out", Style.from_dict(r["style"]))
        tiles = [_tile(p.x, f"{p.name} input {r['input']:.1f} dB"),
                 _tile(Enhancer().enhance(p.x)[0], f"natural {r['natural']:.1f} dB"),
                 _tile(Enhancer(look=look).enhance(p.x)[0], f"look fitted without it {r['look']:.1f} dB"),
                 _tile(p.y, "expert C's edit")]
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_photo(a.out, np.concatenate(rows, axis=0), overwrite=True, quality=88)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
