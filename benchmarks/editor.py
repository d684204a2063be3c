"""Latency of the editor's preview: one slider move of ``deepexposure edit``, per renderer, in one run.

A slider move costs the server ``EditSession.render_preview``: the recipe with the new EV rendered on the
screen-size preview (long edge 1024), the JPEG encoding and the luminance histogram. The page sends *drafts*
while a slider is dragged (the fusing renderers then render at long edge 512 and enlarge) and a full preview when
it is released. Each row simulates a drag of segment 0's slider (``--moves`` steps of +0.05 EV, every one a new
render) and gives the median and the slowest of the moves; the HTTP row adds the round trip through the Starlette
app (TestClient, no network). The reference, measured in the same run, is what the same edit costs without a
preview: the full-resolution ``render --recipe`` of the photo (best of 2); the ratio is reference / median.

Usage: ``python benchmarks/editor.py [--photo PATH] [--mp 12] [--raw FILE] [--moves 12]``. The photo is resized to
``--mp`` megapixels (4:3); ``--raw`` (default: the over-exposed S40 CRW in ../shared/data/raw, when rawpy and the
file are there) adds the rows of a camera RAW. Target: < 150 ms per move on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from deepexposure.apps.editor.session import DRAFT_LONG_EDGE, PREVIEW_LONG_EDGE, EditSession
from deepexposure.apps.pipeline import manual_recipe
from deepexposure.image.io import read_photo
from deepexposure.image.raw import render_photo
from deepexposure.image.render import RENDERERS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO / "samples" / "dicm_34.jpg"
DEFAULT_RAW = REPO.parent / "shared" / "data" / "raw" / "canon_powershot_s40_CRW_0119.CRW"
SEED_EVS = [0.9, -0.4, 0.3, 1.2, -0.8, 0.5]
TARGET_MS = 150.0


def _drag(session: EditSession, renderer: str, moves: int, *, draft: bool) -> list[float]:
    evs = list(session.seed.evs)
    times = []
    session.render_preview(evs, 1.0, renderer, draft=draft)  # warm-up (thread pools, caches)
    for i in range(moves):
        evs[0] = session.seed.evs[0] + 0.05 * (i + 1)
        t0 = time.perf_counter()
        session.render_preview(evs, 1.0, renderer, draft=draft)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _http_drag(session: EditSession, renderer: str, moves: int) -> list[float]:
    import json

    from starlette.testclient import TestClient

    from deepexposure.apps.editor.app import create_app

    client = TestClient(create_app(session, "bench"))
    evs = list(session.seed.evs)
    times = []
    for i in range(moves + 1):
        evs[0] = session.seed.evs[0] + 0.05 * i
        t0 = time.perf_counter()
        r = client.post("/api/render", content=json.dumps({"evs": evs, "renderer": renderer}),
                        headers={"X-Token": "bench", "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        if i:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def _reference_ms(session: EditSession, renderer: str) -> float:
    recipe = session.recipe_for(session.seed.evs, 1.0, renderer)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        render_photo(session.photo, recipe)
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def _rows(label: str, src: Path, moves: int) -> list[str]:
    photo = read_photo(src)
    recipe = manual_recipe(photo.pixels, SEED_EVS, "local")
    session = EditSession(photo, recipe, out_dir=tempfile.gettempdir(), source=src)
    h, w = photo.pixels.shape[:2]
    ph, pw = session.preview.pixels.shape[:2]
    out = []
    for renderer in RENDERERS:
        ref = _reference_ms(session, renderer)
        modes = [("full", False), ("draft", True)] if renderer in ("fusion", "balanced") else [("full", False)]
        for mode, draft in modes:
            t = _drag(session, renderer, moves, draft=draft)
            med = statistics.median(t)
            size = f"{pw}x{ph}" if not draft else f"{DRAFT_LONG_EDGE} px, enlarged"
            out.append(f"| {label} {w}x{h} | {renderer} | {mode} ({size}) | {med:.0f} | {max(t):.0f} | "
                       f"{'yes' if med < TARGET_MS else 'no'} | {ref:.0f} | {ref / med:.0f}x |")
    t = _http_drag(session, "local", moves)
    med = statistics.median(t)
    out.append(f"| {label} {w}x{h} | local | full, HTTP round trip | {med:.0f} | {max(t):.0f} | "
               f"{'yes' if med < TARGET_MS else 'no'} | | |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--mp", type=float, default=12.0, help="megapixels of the test photo")
    ap.add_argument("--raw", type=Path, default=DEFAULT_RAW)
    ap.add_argument("--moves", type=int, default=12)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        w = int(round((args.mp * 1e6 * 4 / 3) ** 0.5))
        h = int(round(w * 3 / 4))
        src = Path(tmp) / "photo.jpg"
        cv2.imwrite(str(src), cv2.resize(cv2.imread(str(args.photo)), (w, h), interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows += _rows("JPEG", src, args.moves)
    try:
        import rawpy  # noqa: F401

        have_raw = args.raw.is_file()
    except ImportError:
        have_raw = False
    if have_raw:
        rows += _rows("RAW", args.raw, args.moves)
    print(f"{os.cpu_count()} CPU cores, OpenCV threads {cv2.getNumThreads()}; preview long edge {PREVIEW_LONG_EDGE}; "
          f"{args.moves} slider moves per row; photo {args.photo.name} resized"
          + ("" if have_raw else "; RAW rows skipped (no rawpy or no file)"))
    print(f"| photo | renderer | preview | median ms per move | slowest ms | < {TARGET_MS:.0f} ms | "
          "full-resolution render ms (reference) | reference / median |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
