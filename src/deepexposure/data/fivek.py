"""The MIT-Adobe FiveK layout: input and expert folders, the paper's folds, paired inputs.

Images are float32 gamma-encoded sRGB in [0, 1], (H, W, 3); EVs are stops in linear light. Pure numpy: no torch.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from deepexposure.data.pairs import Pair
from deepexposure.errors import DataError
from deepexposure.image.io import iter_photo_paths

log = logging.getLogger(__name__)



#: Folds of the protocol of Hu et al. ("Exposure", 2018), used by DeepExposure (Table 1).
FIVEK_FOLDS = ("train_input", "train_expert", "test")
#: Accepted names of the input folder under a FiveK root (compared case-insensitively, first found wins).
FIVEK_INPUT_DIRS = ("input", "inputs", "InputAsShotZeroed", "InputZeroed", "raw", "original")
_FIVEK_ID = re.compile(r"^(a\d{4})(?:[-_. ].*)?$", re.IGNORECASE)
_SUFFIX_PREFERENCE = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".webp")


def fivek_expert_dirs(expert: str = "C") -> tuple[str, ...]:
    """Accepted names of the folder of one expert (A-E), compared case-insensitively, first found wins.

    ``expertC``, ``expert_c``, ``expert-c``, ``C``; for expert C also ``target``, ``targets`` and ``gt`` (the
    usual single-expert exports, e.g. DeepLPF's and DPE's).
    """
    e = expert.strip().upper()
    if e not in ("A", "B", "C", "D", "E"):
        raise DataError(f"unknown FiveK expert {expert!r}; use one of A, B, C, D, E")
    names = (f"expert{e}", f"expert_{e}", f"expert-{e}", e)
    return names + (("target", "targets", "gt") if e == "C" else ())


#: Accepted names of the expert C folder (see :func:`fivek_expert_dirs`).
FIVEK_EXPERT_DIRS = fivek_expert_dirs("C")


def fivek_fold_ids(fold: str) -> list[str]:
    """FiveK image ids of a fold: ``train_input`` a0001-a2000 (inputs), ``train_expert`` a2001-a4000 (unpaired
    expert targets), ``test`` a4001-a5000 (scored against expert C). Read from the shipped fold files."""
    if fold not in FIVEK_FOLDS:
        raise DataError(f"unknown FiveK fold {fold!r}; use one of {', '.join(FIVEK_FOLDS)}")
    res = importlib.resources.files("deepexposure").joinpath("assets", "folds", f"fivek_{fold}.txt")
    try:
        text = res.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"FiveK fold file fivek_{fold}.txt missing from the package ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _find_dir(root: Path, names: Sequence[str], what: str) -> Path:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    present = {d.name.lower(): d for d in sorted(root.iterdir()) if d.is_dir()}
    for n in names:
        if n.lower() in present:
            return present[n.lower()]
    raise DataError(f"{root}: no {what} folder (looked for {', '.join(names)})")


def _photos_by_id(folder: Path) -> dict[str, Path]:
    """FiveK photos of a folder by id (``a0001``), files named ``<id>[-_. anything].<ext>``; several files for one
    id: TIFF, then PNG, then JPEG, then WebP is kept (one warning)."""
    found: dict[str, list[Path]] = {}
    for p in iter_photo_paths([folder]):
        m = _FIVEK_ID.match(p.stem)
        if m:
            found.setdefault(m.group(1).lower(), []).append(p)
    dup = sum(len(ps) > 1 for ps in found.values())
    if dup:
        warnings.warn(f"{folder}: {dup} ids have several files; kept one each (TIFF, then PNG, then JPEG)",
                      stacklevel=3)
    return {k: min(ps, key=lambda q: (_SUFFIX_PREFERENCE.index(q.suffix.lower()), q.name))
            for k, ps in found.items()}


def fivek_pairs(root: str | os.PathLike, *, fold: str = "test", expert: str = "C") -> list[Pair]:
    """(input, expert) pairs of a FiveK fold from an exported FiveK root, in fold order.

    ``root`` holds an input folder (one of :data:`FIVEK_INPUT_DIRS`) and an expert folder
    (:func:`fivek_expert_dirs`), with files named by id and an optional suffix (``a0001.tif``,
    ``a0001-jmac_DSC1459.tif``, ``.png``, ``.jpg``). Ids of the fold missing on either side are reported by count
    (one warning) and skipped; missing folders or no pair raise :class:`DataError`.
    """
    root = Path(root)
    in_dir = _find_dir(root, FIVEK_INPUT_DIRS, "FiveK input")
    ex_dir = _find_dir(root, fivek_expert_dirs(expert), f"FiveK expert {expert.upper()}")
    ids = fivek_fold_ids(fold)
    inputs, experts = _photos_by_id(in_dir), _photos_by_id(ex_dir)
    pairs = [Pair(i, inputs[i], experts[i]) for i in ids if i in inputs and i in experts]
    if not pairs:
        raise DataError(f"{root}: no {fold} pair found in {in_dir.name}/ and {ex_dir.name}/ "
                        f"(ids {ids[0]}-{ids[-1]})")
    if len(pairs) < len(ids):
        warnings.warn(f"FiveK {fold}: {len(ids) - len(pairs)} of {len(ids)} ids missing in {root}, skipped",
                      stacklevel=2)
    return pairs


def _fivek_list(root: Path, folder_names: Sequence[str], what: str, fold: str) -> list[Path]:
    folder = _find_dir(root, folder_names, what)
    ids = fivek_fold_ids(fold)
    files = _photos_by_id(folder)
    out = [files[i] for i in ids if i in files]
    if not out:
        raise DataError(f"{folder}: no photo of the FiveK {fold} fold (ids {ids[0]}-{ids[-1]})")
    if len(out) < len(ids):
        warnings.warn(f"FiveK {fold}: {len(ids) - len(out)} of {len(ids)} ids missing in {folder}, skipped",
                      stacklevel=3)
    return out


def fivek_inputs(root: str | os.PathLike, fold: str = "train_input") -> list[Path]:
    """Input photos of a FiveK fold (default: the 2,000 unpaired training inputs), in fold order."""
    return _fivek_list(Path(root), FIVEK_INPUT_DIRS, "FiveK input", fold)


def fivek_experts(root: str | os.PathLike, fold: str = "train_expert", *, expert: str = "C") -> list[Path]:
    """Expert photos of a FiveK fold (default: expert C of the 2,000 unpaired training targets), in fold order."""
    return _fivek_list(Path(root), fivek_expert_dirs(expert), f"FiveK expert {expert.upper()}", fold)


def check_fivek_paired(fivek: str | os.PathLike | None, fivek_paired: bool) -> None:
    """``fivek_paired`` needs a FiveK root: :class:`DataError` (one line, named by the CLI's options) otherwise."""
    if fivek_paired and fivek is None:
        raise DataError("--fivek-paired needs --fivek ROOT (it pairs the FiveK train_input fold with its expert C "
                        "renders)")


def fivek_paired_inputs(root: str | os.PathLike, fold: str = "train_input", *, expert: str = "C"
                        ) -> tuple[list[Pair], list[Path]]:
    """Input photos of a FiveK fold split by whether the expert's own render of the same id exists.

    Returns (pairs (input, render of the same id), inputs without a render), both in fold order; together they
    are :func:`fivek_inputs` (whose missing ids are reported as there). Inputs without a render are counted in one
    warning (the caller uses them unpaired); no render of any input raises :class:`DataError`.
    """
    root = Path(root)
    inputs = fivek_inputs(root, fold)
    ex_dir = _find_dir(root, fivek_expert_dirs(expert), f"FiveK expert {expert.upper()}")
    renders = _photos_by_id(ex_dir)
    pairs: list[Pair] = []
    alone: list[Path] = []
    for p in inputs:
        i = _FIVEK_ID.match(p.stem).group(1).lower()  # fivek_inputs keeps only files named by id
        if i in renders:
            pairs.append(Pair(i, p, renders[i]))
        else:
            alone.append(p)
    if not pairs:
        raise DataError(f"{ex_dir}: no expert {expert.upper()} render of the {len(inputs)} FiveK {fold} inputs")
    if alone:
        warnings.warn(f"FiveK {fold}: {len(alone)} of {len(inputs)} inputs have no expert {expert.upper()} render "
                      f"in {ex_dir}; used unpaired", stacklevel=2)
    return pairs, alone
