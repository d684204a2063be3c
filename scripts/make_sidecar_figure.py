"""The README's sidecar picture: the under-exposed S40 RAW as darktable and RawTherapee render it, without and with
the sidecar ``deepexposure enhance --sidecar`` writes.

Usage: ``python scripts/make_sidecar_figure.py [--out docs/images/sidecars.jpg] [--raw FILE]`` (needs rawpy,
``darktable-cli``, ``rawtherapee-cli`` and ``../shared/data/raw``). Works on a copy of the RAW in a temporary
folder, with the programs' settings there too. Tiles: darktable's own default (scene-referred: filmic, +0.7 EV),
darktable with our sidecar (its defaults, then the exposure module at the recipe's EV), RawTherapee's neutral
profile, RawTherapee with our sidecar; each tile gives its mean linear level.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from deepexposure.apps.cli import main as cli
from deepexposure.image.color import srgb_to_linear
from deepexposure.image.io import read_photo, write_photo
from deepexposure.image.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data" / "raw" / "canon_powershot_s40_CRW_0117.CRW"


def _tile(tif: Path, label: str, width: int = 480) -> np.ndarray:
    srgb = read_photo(tif).pixels
    level = float(srgb_to_linear(srgb).mean())
    img = np.clip(srgb * 255 + 0.5, 0, 255).astype(np.uint8)
    h = int(round(img.shape[0] * width / img.shape[1]))
    img = np.ascontiguousarray(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
    cv2.rectangle(img, (0, 0), (width, 18), (0, 0, 0), -1)
    cv2.putText(img, f"{label} (mean linear {level:.3f})", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _run(cmd: list[str], env: dict | None = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "sidecars.jpg")
    ap.add_argument("--raw", type=Path, default=RAW)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "bare").mkdir()
        plain, raw = t / "bare" / args.raw.name, t / args.raw.name
        shutil.copyfile(args.raw, plain)
        shutil.copyfile(args.raw, raw)
        r = CliRunner().invoke(cli, ["enhance", str(raw), "--sidecar", "darktable", "--sidecar", "rawtherapee",
                                     "--recipe"])
        if r.exit_code:
            raise SystemExit(r.output)
        ev = Recipe.load(raw.with_suffix(".recipe.json")).evs[0]
        dt = ["darktable-cli"]
        _run([*dt, str(plain), str(t / "dt_default.tif"), "--core", "--configdir", str(t / "dt1")])
        _run([*dt, str(raw), str(raw) + ".xmp", str(t / "dt_ours.tif"), "--core", "--configdir", str(t / "dt2")])
        env = {**os.environ, "HOME": tmp, "XDG_CONFIG_HOME": str(t / "cfg"), "XDG_CACHE_HOME": str(t / "cache")}
        for src, out in ((plain, "rt_neutral.tif"), (raw, "rt_ours.tif")):
            _run(["rawtherapee-cli", "-o", str(t / out), "-t", "-b8", "-Y", "-s", "-c", str(src)], env)
        tiles = [_tile(t / "dt_default.tif", "darktable default"),
                 _tile(t / "dt_ours.tif", f"darktable + sidecar, {ev:+.2f} EV"),
                 _tile(t / "rt_neutral.tif", "RawTherapee neutral"),
                 _tile(t / "rt_ours.tif", f"RawTherapee + sidecar, {ev:+.2f} EV")]
    rows = [np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)]
    sheet = np.concatenate(rows, axis=0).astype(np.float32) / 255
    write_photo(args.out, sheet, overwrite=True, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
