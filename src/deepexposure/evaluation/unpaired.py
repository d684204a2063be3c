"""Evaluation without targets: distribution distances to a reference set of good photos, and a contact sheet.

As in Hu et al.'s "Exposure" (2018), a set of photos is described by the histograms of three pixel statistics and
compared with the same histograms of a reference set by **histogram intersection** (``sum_i min(p_i, q_i)`` of two
normalised histograms: 1 = identical distributions, 0 = disjoint). No learned weights. Statistics, per pixel, on
each photo quantised to 8 bits and resized to ``long_edge`` (500 px by default, INTER_AREA, as the paired metrics):

* ``luminance``: BT.601 luma ``Y' = 0.299 R' + 0.587 G' + 0.114 B'`` of the sRGB values in [0,1]; 32 bins on [0,1].
* ``contrast``: local standard deviation of Y' in a 7x7 box window (population std); 32 bins on [0, 0.5].
* ``saturation``: HSV saturation ``(max - min) / max`` of R'G'B' (0 where max = 0); 32 bins on [0,1].

A set's histogram is the mean of its photos' normalised histograms (every photo weighs the same, whatever its
size). Methods that need a target (oracles) cannot run here and are skipped.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from deepexposure.atomic import atomic_write_bytes
from deepexposure.errors import DataError, DeepExposureError
from deepexposure.evaluation.baselines import Method, get_method
from deepexposure.evaluation.metrics import DEFAULT_LONG_EDGE, prepare

__all__ = ["STATS", "BINS", "photo_histograms", "set_histograms", "histogram_intersection", "evaluate_unpaired",
           "contact_sheet", "write_unpaired_report"]

STATS = ("luminance", "contrast", "saturation")
BINS = 32
_RANGES = {"luminance": (0.0, 1.0), "contrast": (0.0, 0.5), "saturation": (0.0, 1.0)}
_WINDOW = 7


def photo_histograms(srgb: np.ndarray, *, long_edge: int | None = DEFAULT_LONG_EDGE) -> dict[str, np.ndarray]:
    """Normalised histograms (BINS,) float64 summing to 1 of luminance, local contrast and saturation of one photo.

    ``srgb``: (H,W,3) float [0,1] or uint8/uint16; quantised to 8 bits and resized to ``long_edge`` first.
    """
    x = prepare(srgb, long_edge=long_edge).astype(np.float64) / 255.0
    y = x @ np.array([0.299, 0.587, 0.114])
    mean = cv2.blur(y, (_WINDOW, _WINDOW), borderType=cv2.BORDER_REFLECT)
    sq = cv2.blur(y * y, (_WINDOW, _WINDOW), borderType=cv2.BORDER_REFLECT)
    contrast = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    mx, mn = x.max(axis=2), x.min(axis=2)
    sat = np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1.0), 0.0)
    out = {}
    for name, v in (("luminance", y), ("contrast", contrast), ("saturation", sat)):
        lo, hi = _RANGES[name]
        h, _ = np.histogram(np.clip(v, lo, hi), bins=BINS, range=(lo, hi))
        out[name] = h / max(h.sum(), 1)
    return out


def set_histograms(hists: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean of per-photo histograms (each photo weighs the same)."""
    if not hists:
        raise DataError("no photos to describe")
    return {k: np.mean([h[k] for h in hists], axis=0) for k in STATS}


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
    """``sum(min(p, q))`` of two histograms, each normalised to sum 1 first -> [0, 1] (1 = identical)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def _thumb(srgb: np.ndarray, height: int) -> np.ndarray:
    h, w = srgb.shape[:2]
    size = (max(1, round(w * height / h)), height)
    small = cv2.resize(np.ascontiguousarray(srgb, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    return np.floor(np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str], *, row_labels: Sequence[str] = (),
                  cell: int = 160, pad: int = 4) -> np.ndarray:
    """A uint8 RGB grid: one row per photo (float sRGB (H,W,3) images), one column per ``columns`` label.

    Each image is fitted into a ``cell`` x ``cell`` box (aspect ratio kept, centred on grey); labels on top.
    """
    head = 22
    label_w = 90 if row_labels else 0
    W = label_w + len(columns) * (cell + pad) + pad
    H = head + len(rows) * (cell + pad) + pad
    sheet = np.full((H, W, 3), 40, np.uint8)
    for j, name in enumerate(columns):
        cv2.putText(sheet, name[:22], (label_w + pad + j * (cell + pad), 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
    for i, imgs in enumerate(rows):
        y0 = head + i * (cell + pad)
        if row_labels:
            cv2.putText(sheet, str(row_labels[i])[:12], (4, y0 + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 1, cv2.LINE_AA)
        for j, img in enumerate(imgs):
            h, w = img.shape[:2]
            s = cell / max(h, w)
            t = cv2.resize(np.ascontiguousarray(img, dtype=np.float32),
                           (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            t = np.floor(np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8)
            x0 = label_w + pad + j * (cell + pad)
            oy, ox = (cell - t.shape[0]) // 2, (cell - t.shape[1]) // 2
            sheet[y0 + oy:y0 + oy + t.shape[0], x0 + ox:x0 + ox + t.shape[1]] = t
    return sheet


def evaluate_unpaired(photos: Sequence[str | os.PathLike], reference: Sequence[str | os.PathLike],
                      methods: Sequence[Method | str], *, long_edge: int | None = DEFAULT_LONG_EDGE,
                      progress: bool = True, sheet_rows: int = 12, renderer: str | None = None,
                      highlight_guard: bool = True) -> dict:
    """Histogram intersections with the ``reference`` photos, for the input set and each method's outputs.

    Returns ``{"scores": {column: {stat: hi, ..., "mean": mean of the three}}, "n_photos", "n_reference",
    "skipped": [oracle names], "sheet": uint8 contact sheet of the first ``sheet_rows`` photos, "columns"}``.
    """
    from tqdm import tqdm

    from deepexposure.image.io import read_photo

    ms = [get_method(m, renderer=renderer, highlight_guard=highlight_guard) if isinstance(m, (str, Path)) else m
          for m in methods]
    skipped = [m.name for m in ms if m.needs_target]
    if skipped:
        warnings.warn(f"methods that need a target skipped: {', '.join(skipped)}", stacklevel=2)
    ms = [m for m in ms if m.name not in skipped]
    ref = [photo_histograms(read_photo(p).pixels, long_edge=long_edge)
           for p in tqdm(list(reference), desc="reference", disable=not progress)]
    ref_set = set_histograms(ref)
    columns = ["input", *[m.name for m in ms]]
    hists: dict[str, list] = {c: [] for c in columns}
    sheet: list[list[np.ndarray]] = []
    labels: list[str] = []
    for i, p in enumerate(tqdm(list(photos), desc="photos", disable=not progress)):
        img = read_photo(p).pixels
        outs = [img]
        for m in ms:
            try:
                if getattr(m, "needs_stem", False):
                    outs.append(m(img, stem=Path(p).stem))
                else:
                    outs.append(m(img))
            except DeepExposureError as exc:
                raise DeepExposureError(f"{m.name} failed on {Path(p).name}: {exc}") from exc
        for c, o in zip(columns, outs, strict=True):
            hists[c].append(photo_histograms(o, long_edge=long_edge))
        if i < sheet_rows:
            sheet.append([_thumb(o, 160).astype(np.float32) / 255 for o in outs])
            labels.append(Path(p).stem)
    scores = {}
    for c in columns:
        s = set_histograms(hists[c])
        sc = {k: histogram_intersection(s[k], ref_set[k]) for k in STATS}
        sc["mean"] = float(np.mean([sc[k] for k in STATS]))
        scores[c] = sc
    return {"scores": scores, "n_photos": len(hists["input"]), "n_reference": len(ref), "skipped": skipped,
            "columns": columns, "sheet": contact_sheet(sheet, columns, row_labels=labels)}


def write_unpaired_report(result: dict, out_dir: str | os.PathLike, *, config: dict | None = None) -> dict[str, Path]:
    """Write ``unpaired.json``, ``unpaired.md`` and ``contact_sheet.png`` (atomically) into ``out_dir``."""
    from deepexposure.evaluation.report import atomic_write_text, provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**(config or {}), **provenance()}
    js = {"config": cfg, "n_photos": result["n_photos"], "n_reference": result["n_reference"],
          "skipped": result["skipped"], "histogram_intersection": result["scores"]}
    head = "| Method | luminance | contrast | saturation | mean |\n|---|---:|---:|---:|---:|\n"
    rows = "".join(f"| `{c}` | " + " | ".join(f"{s[k]:.4f}" for k in (*STATS, "mean")) + " |\n"
                   for c, s in result["scores"].items())
    md = (f"# Unpaired evaluation: {cfg.get('dataset', '')}\n\nHistogram intersection (1 = same distribution as "
          f"the reference set, {result['n_reference']} photos) over {result['n_photos']} photos at long edge "
          f"{cfg.get('long_edge')} px. deepexposure {cfg['version']}, commit {cfg['commit']}.\n\n" + head + rows)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(result["sheet"], cv2.COLOR_RGB2BGR))
    sheet = out / "contact_sheet.png"
    atomic_write_bytes(sheet, buf.tobytes())
    return {"unpaired.json": atomic_write_text(out / "unpaired.json", json.dumps(js, indent=2) + "\n"),
            "unpaired.md": atomic_write_text(out / "unpaired.md", md), "contact_sheet.png": sheet}
