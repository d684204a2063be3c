"""A contact sheet of real badly exposed photos (no targets): one row per photo, one column per method.

Usage::

    python scripts/contact_sheet.py [--photos DIR] [--limit 16] [-m identity -m fixed-fusion -m natural ...]
                                    [--renderer R] [--out docs/images/dicm_contact.jpg]

Methods are :func:`deepexposure.evaluation.get_method` names (``identity``, ``fixed-fusion``, ``natural``, ``expert``,
``paper``, ``deepexposure``,
``learned-global:RUN``, a run folder, ...), optionally ``NAME@RENDERER``; oracles need targets and are refused. Photos are taken in sorted
order, every ``len // limit``-th one, so the sheet covers the whole set without choosing favourites. Each tile is
labelled with its method (the grid is :func:`deepexposure.evaluation.unpaired.contact_sheet`, as in
``evaluate --unpaired``, which shows the first photos instead). The sheet is for looking at: say what you see (dark scenes lifted? skies held? halos?).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from deepexposure.atomic import atomic_write_bytes
from deepexposure.evaluation.baselines import get_method
from deepexposure.evaluation.unpaired import contact_sheet
from deepexposure.image.io import iter_photo_paths, read_photo
from deepexposure.image.segmentation import reduce_long_edge

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=SHARED / "dicm")
    ap.add_argument("--limit", type=int, default=16, help="photos on the sheet, spread evenly over the set")
    ap.add_argument("-m", "--method", action="append", default=None,
                    help="method column, NAME or NAME@RENDERER (default: identity, fixed-fusion, natural, expert, "
                         "paper)")
    ap.add_argument("--renderer", default=None, help="renderer for the models (default: each model's own)")
    ap.add_argument("--tile", type=int, default=200, help="cell size in pixels (long edge of each tile)")
    ap.add_argument("--work", type=int, default=768, help="long edge the photos are processed at")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "dicm_contact.jpg")
    args = ap.parse_args(argv)
    paths = sorted(iter_photo_paths([args.photos]))
    if not paths:
        raise SystemExit(f"error: no photos in {args.photos}")
    step = max(1, len(paths) // args.limit)
    paths = paths[::step][: args.limit]
    methods = []
    for spec in args.method or ["identity", "fixed-fusion", "natural", "expert", "paper"]:
        name, _, renderer = spec.partition("@")
        methods.append(get_method(name, renderer=renderer or args.renderer))  # names carry the renderer
    if any(m.needs_target for m in methods):
        raise SystemExit("error: oracles need targets; the photos on a contact sheet have none")
    rows = []
    for path in paths:
        src = reduce_long_edge(read_photo(path).pixels, args.work)
        rows.append([m(src) for m in methods])
        print(path.name, flush=True)
    sheet = contact_sheet(rows, [m.name for m in methods], row_labels=[p.name for p in paths], cell=args.tile)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, buf.tobytes())
    print(args.out)


if __name__ == "__main__":
    main()
