"""Data sets: previews of photo folders, the FiveK protocol, synthetic exposure degradation, paired folders.

No torch here: arrays are numpy; the trainer turns them into tensors.

Synthetic degradation (``degrade``), "exposure errors of a small camera", applied in linear light:

1. a global exposure error: ``ev_global`` uniform in [-2.5, -0.5] with probability 0.7 (under-exposure, the
   common failure), else uniform in [+0.5, +1.5] (over-exposure; highlights clip);
2. a smooth local error field added to it: a linear ramp across the frame in a random direction with amplitude
   uniform in [-1, 1] EV end to end (uneven light, backlight), plus one broad Gaussian blob of amplitude uniform
   in [-0.8, 0.8] EV and width 0.2-0.5 of the frame (flash fall-off, vignetting);
3. sensor clipping at 1.0 in linear light, then sRGB encoding and 8-bit quantisation.

Every degraded pixel is ``apply_ev(x, ev_field)`` up to clipping and quantisation, so per-region exposure edits
can undo most of it; the clipped highlights cannot be restored (they bound the oracle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm.auto import tqdm

from deepexposure.color import apply_ev
from deepexposure.errors import DataError, DeepExposureError
from deepexposure.io import SUPPORTED_EXTENSIONS, from_float, iter_photo_paths, read_photo, write_photo
from deepexposure.segmentation import make_preview

__all__ = [
    "DegradeConfig", "degrade", "degrade_field", "load_previews", "degraded_previews", "Pair", "paired_folder",
    "fivek_fold_ids", "fivek_pairs", "fivek_inputs", "fivek_experts", "make_dev_pairs", "select_sice",
    "FIVEK_INPUT_DIRS", "FIVEK_EXPERT_DIRS",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DegradeConfig:
    """Parameters of the synthetic exposure degradation (EV stops unless stated)."""

    p_under: float = 0.7  #: probability of a global under-exposure (else over-exposure)
    under: tuple[float, float] = (-2.5, -0.5)  #: range of the global EV error when under-exposed
    over: tuple[float, float] = (0.5, 1.5)  #: range of the global EV error when over-exposed
    ramp: float = 1.0  #: max |amplitude| of the linear ramp, end to end
    blob: float = 0.8  #: max |amplitude| of the Gaussian blob
    blob_width: tuple[float, float] = (0.2, 0.5)  #: blob sigma as a fraction of the frame size
    quantise: bool = True  #: round the result to 8 bits


def degrade_field(shape: tuple[int, int], rng: np.random.Generator, config: DegradeConfig = DegradeConfig()
                  ) -> tuple[np.ndarray, dict]:
    """The EV error field (H, W) float32 of one degradation and its parameters (JSON-able)."""
    h, w = shape
    if rng.random() < config.p_under:
        g = rng.uniform(*config.under)
    else:
        g = rng.uniform(*config.over)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = rng.uniform(-config.ramp, config.ramp)
    blob = rng.uniform(-config.blob, config.blob)
    cx, cy = rng.uniform(0.1, 0.9, size=2)
    width = rng.uniform(*config.blob_width)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / max(w - 1, 1), yy / max(h - 1, 1)
    proj = (u - 0.5) * np.cos(angle) + (v - 0.5) * np.sin(angle)  # in [-0.71, 0.71]
    field = g + ramp * proj / 0.7071 / 2 + blob * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * width**2))
    params = {"ev_global": round(float(g), 4), "ramp": round(float(ramp), 4), "ramp_angle": round(float(angle), 4),
              "blob": round(float(blob), 4), "blob_center": [round(float(cx), 4), round(float(cy), 4)],
              "blob_width": round(float(width), 4)}
    return field.astype(np.float32), params


def degrade(srgb: np.ndarray, rng: np.random.Generator, *, config: DegradeConfig = DegradeConfig()
            ) -> tuple[np.ndarray, dict]:
    """Synthetically mis-expose a well-exposed float32 sRGB [0,1] photo (see module doc) -> (photo, params)."""
    field, params = degrade_field(srgb.shape[:2], rng, config)
    out = apply_ev(srgb, field[..., None])
    if config.quantise:
        out = from_float(out, 8).astype(np.float32) / 255.0
    return out, params


def _cache_key(paths: Sequence[Path], size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_mtime_ns}|{st.st_size}".encode())
    return h.hexdigest()[:16]


def load_previews(paths: Iterable[str | os.PathLike], *, size: int = 64, cache_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> tuple[np.ndarray, list[Path]]:
    """Read photos and reduce each to a (size, size, 3) float32 sRGB preview (INTER_AREA, aspect not kept).

    Folders are expanded (recursively). Unreadable files are reported (a warning each) and skipped; no usable
    photo raises :class:`DataError`. With ``cache_dir`` the result is cached in an .npz keyed by the files' paths,
    sizes and times, so a re-run is instant.
    """
    files = [p for p in iter_photo_paths(list(paths), recursive=True) if p.suffix.lower() in SUPPORTED_EXTENSIONS]
    if not files:
        raise DataError(f"no photos found in {', '.join(map(str, paths))}")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"previews_{_cache_key(files, size)}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                return z["previews"], [Path(p) for p in z["paths"]]
    out, kept = [], []
    for p in tqdm(files, desc="previews", unit="photo", disable=not progress, leave=False):
        try:
            out.append(make_preview(read_photo(p).pixels, size))
            kept.append(p)
        except DeepExposureError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    if not out:
        raise DataError(f"none of the {len(files)} files could be read as photos")
    previews = np.stack(out).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, previews=previews, paths=np.array([str(p) for p in kept]))
        os.replace(tmp, cache)
    return previews, kept


def degraded_previews(previews: np.ndarray, *, seed: int, config: DegradeConfig = DegradeConfig(), copies: int = 1
                      ) -> np.ndarray:
    """``copies`` synthetic degradations of each preview (N*copies, h, w, 3), deterministic in ``seed``.

    Degrading the preview instead of the full photo differs only in the order of resampling and the (linear)
    exposure, which commute up to clipping.
    """
    out = []
    for c in range(copies):
        for i, pv in enumerate(previews):
            out.append(degrade(pv, np.random.default_rng([seed, c, i]), config=config)[0])
    return np.stack(out).astype(np.float32)


class Pair(NamedTuple):
    """A paired example: ``stem`` (id), ``input_path``, ``target_path``."""

    stem: str
    input_path: Path
    target_path: Path


def _by_stem(folder: Path, id_len: int | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in iter_photo_paths([folder]):
        key = p.stem[:id_len] if id_len else p.stem
        found.setdefault(key, p)
    return found


def paired_folder(root: str | os.PathLike) -> list[Pair]:
    """Pairs of ``root/input/<stem>.*`` and ``root/target/<stem>.*`` (any supported suffix), sorted by stem."""
    root = Path(root)
    inp, tgt = root / "input", root / "target"
    for d in (inp, tgt):
        if not d.is_dir():
            raise DataError(f"{root}: expected folders input/ and target/ (missing {d.name}/)")
    a, b = _by_stem(inp), _by_stem(tgt)
    missing = sorted(set(a) ^ set(b))
    if missing:
        warnings.warn(f"{root}: {len(missing)} photos without a partner skipped (e.g. {missing[0]})", stacklevel=2)
    pairs = [Pair(s, a[s], b[s]) for s in sorted(set(a) & set(b))]
    if not pairs:
        raise DataError(f"{root}: no input/target pairs with matching names")
    return pairs


#: Folder names accepted for FiveK inputs and expert-C targets (first match wins).
FIVEK_INPUT_DIRS = ("input", "InputAsShotZeroed", "inputs", "raw", "original")
FIVEK_EXPERT_DIRS = ("expertC", "ExpertC", "expert_c", "C", "c", "target", "output")
_FOLDS = {"train_input": "fivek_train_input.txt", "train_expert": "fivek_train_expert.txt", "test": "fivek_test.txt"}


def fivek_fold_ids(fold: str) -> list[str]:
    """FiveK ids of a fold of Hu et al.'s protocol (as DeepExposure Table 1): ``train_input`` = a0001-a2000,
    ``train_expert`` = a2001-a4000 (their expert-C photos, unpaired), ``test`` = a4001-a5000."""
    if fold not in _FOLDS:
        raise DataError(f"unknown FiveK fold {fold!r}; choose from {', '.join(_FOLDS)}")
    text = (resources.files("deepexposure") / "assets" / "folds" / _FOLDS[fold]).read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _find_dir(root: Path, names: Sequence[str], what: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DataError(f"{root}: no {what} folder (looked for {', '.join(names)})")


def _fold_files(folder: Path, ids: list[str]) -> list[tuple[str, Path]]:
    found = _by_stem(folder, id_len=5)
    have = [(i, found[i]) for i in ids if i in found]
    if len(have) < len(ids):
        warnings.warn(f"{folder}: {len(ids) - len(have)} of {len(ids)} fold photos missing, skipped", stacklevel=3)
    if not have:
        raise DataError(f"{folder}: none of the {len(ids)} photos of the fold found (files must start with the id, "
                        f"e.g. a0001.tif or a0001-name.jpg)")
    return have


def fivek_inputs(root: str | os.PathLike, fold: str = "train_input") -> list[Path]:
    """Input photos of a FiveK fold under ``root`` (folder names in ``FIVEK_INPUT_DIRS``)."""
    folder = _find_dir(Path(root), FIVEK_INPUT_DIRS, "FiveK input")
    return [p for _, p in _fold_files(folder, fivek_fold_ids(fold))]


def fivek_experts(root: str | os.PathLike, fold: str = "train_expert", expert: str = "C") -> list[Path]:
    """Expert photos (expert C by default) of a FiveK fold under ``root``."""
    names = FIVEK_EXPERT_DIRS if expert.upper() == "C" else (f"expert{expert}", f"Expert{expert}", expert)
    folder = _find_dir(Path(root), names, f"FiveK expert {expert}")
    return [p for _, p in _fold_files(folder, fivek_fold_ids(fold))]


def fivek_pairs(root: str | os.PathLike, *, fold: str = "test", expert: str = "C") -> list[Pair]:
    """(input, expert) pairs of a FiveK fold, matched by id."""
    root = Path(root)
    ids = fivek_fold_ids(fold)
    inp = dict(_fold_files(_find_dir(root, FIVEK_INPUT_DIRS, "FiveK input"), ids))
    names = FIVEK_EXPERT_DIRS if expert.upper() == "C" else (f"expert{expert}", f"Expert{expert}", expert)
    tgt = dict(_fold_files(_find_dir(root, names, f"FiveK expert {expert}"), ids))
    pairs = [Pair(i, inp[i], tgt[i]) for i in ids if i in inp and i in tgt]
    if not pairs:
        raise DataError(f"{root}: no FiveK {fold} pairs found")
    return pairs


def make_dev_pairs(sources: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, seed: int = 0,
                   long_edge: int = 512, config: DegradeConfig = DegradeConfig(), limit: int | None = None,
                   overwrite: bool = False, progress: bool = True) -> list[Pair]:
    """Synthetic development pairs: ``out/target/<stem>.png`` (well-exposed source, long edge ``long_edge``) and
    ``out/input/<stem>.png`` (its degradation), plus ``degradations.json``. Deterministic per (seed, stem)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: not empty (pass --overwrite to regenerate)")
    files = iter_photo_paths(list(sources), recursive=True)[:limit]
    if not files:
        raise DataError("no source photos")
    record: dict = {"seed": seed, "long_edge": long_edge, "config": asdict(config), "photos": {}}
    pairs = []
    for p in tqdm(files, desc="pairs", unit="photo", disable=not progress, leave=False):
        try:
            px = read_photo(p).pixels
        except DeepExposureError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
            continue
        h, w = px.shape[:2]
        f = long_edge / max(h, w)
        if f < 1:
            px = cv2.resize(px, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        px = from_float(px, 8).astype(np.float32) / 255.0
        digest = int(hashlib.sha256(p.stem.encode()).hexdigest()[:8], 16)
        bad, params = degrade(px, np.random.default_rng([seed, digest]), config=config)
        ti, ii = out / "target" / f"{p.stem}.png", out / "input" / f"{p.stem}.png"
        write_photo(ti, px, overwrite=overwrite)
        write_photo(ii, bad, overwrite=overwrite)
        record["photos"][p.stem] = {"source": str(p), **params}
        pairs.append(Pair(p.stem, ii, ti))
    (out / "degradations.json").write_text(json.dumps(record, indent=1) + "\n")
    return pairs


def select_sice(root: str | os.PathLike, *, dark_max: float = 0.25, bright_min: float = 0.7) -> list[Path]:
    """Clearly mis-exposed SICE frames: mean sRGB grey of a 32x32 thumbnail below ``dark_max`` or above
    ``bright_min`` (frames in between are the brackets' well-exposed middle and are left out)."""
    chosen = []
    for p in iter_photo_paths([Path(root)], recursive=True):
        img = cv2.imread(str(p), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if img is None:
            continue
        m = float(cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA).mean()) / 255.0
        if m < dark_max or m > bright_min:
            chosen.append(p)
    return chosen
