"""Training data: input previews (+ their segment labels) and expert previews, built once and cached as .npz."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepexposure.atomic import atomic_write
from deepexposure.errors import DataError, PhotoError

__all__ = ["TrainData", "build_training_data", "segment_all"]


@dataclass
class TrainData:
    """``inputs`` (N,64,64,3) float32 sRGB [0,1]; ``labels`` (N,64,64) int32 0..n-1; ``experts`` (M,64,64,3).

    ``targets`` (N,64,64,3): the preview an input should become, where known (the clean photo of a synthetic input,
    the target of a real pair), else zeros; ``has_target`` (N,) bool says which. Used by the optional paired anchor
    (RLConfig.paired_weight), the global-branch warm start and the learned-global baseline.
    """

    inputs: np.ndarray
    labels: np.ndarray
    experts: np.ndarray
    targets: np.ndarray | None = None
    has_target: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.targets is None:
            self.targets = np.zeros_like(self.inputs)
            self.has_target = np.zeros(len(self.inputs), bool)
        if self.has_target is None or self.targets.shape != self.inputs.shape or len(self.has_target) != len(
                self.inputs):
            raise DataError("targets/has_target do not match inputs")
        if len(self.inputs) == 0:
            raise DataError("no usable input photo")
        if len(self.experts) == 0:
            raise DataError("no usable expert photo")
        if self.labels.shape != self.inputs.shape[:3]:
            raise DataError(f"labels {self.labels.shape} do not match inputs {self.inputs.shape}")


def segment_all(previews: np.ndarray, segmentation: dict) -> np.ndarray:
    """Labels (N,64,64) int32 of every preview with ``segmentation.segment(**segmentation)``."""
    from deepexposure.image.segmentation import segment

    return np.stack([segment(p, **segmentation) for p in previews]).astype(np.int32)


def _file_list(paths: Sequence[str | os.PathLike], *, extra: Sequence[str] = ()) -> list[list]:
    """``[resolved path, byte size, mtime in ns]`` of every photo under ``paths`` (folders searched recursively)
    and of the files named ``extra`` in each folder of ``paths`` that has them: what a cache of their data depends on.
    """
    from deepexposure.image.io import iter_photo_paths

    files = [Path(p) for p in paths]
    try:
        found = iter_photo_paths(files, recursive=True)
    except PhotoError as exc:
        raise DataError(str(exc)) from None
    found += [p / name for p in files for name in extra if (p / name).is_file()]
    return [_file_entry(f) for f in found]


def _file_entry(f: Path) -> list:
    """``[resolved path, byte size, mtime in ns]`` of one file (``[path, None, None]`` when it cannot be read)."""
    try:
        st = f.stat()
        return [str(f.resolve()), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(f), None, None]  # unreadable: reported when the data is built


def build_training_data(*, inputs: Sequence[str | os.PathLike] = (), synthetic: Sequence[str | os.PathLike] = (),
                        experts: Sequence[str | os.PathLike] = (), sice: Sequence[str | os.PathLike] = (),
                        sice_references: Sequence[str | os.PathLike] = (),
                        fivek: str | os.PathLike | None = None, copies: int = 4, seed: int = 0,
                        segmentation: dict, cache_dir: str | os.PathLike | None = None,
                        progress: bool = True, degrade: dict | None = None,
                        degrade_size: int = 128, pairs: Sequence[str | os.PathLike] = (),
                        pairs_repeat: int = 1, fivek_paired: bool = False) -> TrainData:
    """Load/derive all previews, segment the inputs, cache the result in ``cache_dir/train-<hash>.npz``.

    The cache is keyed on the files themselves (resolved path, size and mtime of every photo found), not on the
    folder names, so adding, removing or changing a photo builds the data again.

    ``inputs``: files/folders of real badly exposed photos used as they are; ``synthetic``: well-exposed photos
    degraded ``copies`` times each (data.degraded_previews with ``DegradeConfig.from_dict(degrade)``, ``seed``) at
    ``degrade_size`` x ``degrade_size`` px, then reduced to 64x64 previews;
    ``sice``: SICE/Zero-DCE++ roots whose clearly under/over-exposed frames are used (data.select_sice);
    ``sice_references``: SICE/Zero-DCE++ roots whose best-exposed frame per bracket joins ``synthetic``
    (data.select_sice_references);
    ``experts``: well-exposed photos; ``fivek``: FiveK root (train_input fold as inputs, expert C train_expert fold
    as experts). Unreadable files are reported and skipped; no usable input or expert raises DataError.

    Real pairs (inputs WITH a target, ``has_target`` True): ``pairs``, paired folders ``DIR/input`` + ``DIR/target``
    (data.paired_folder); ``fivek_paired``: also the train_input fold's own expert C renders as the targets of those
    inputs (data.fivek_paired_inputs; inputs without a render stay unpaired inputs). Each real pair appears
    ``pairs_repeat`` times (consecutively); pairs whose sides differ in aspect ratio are reported and skipped
    (data.load_pair_previews). Order of the inputs: real unpaired, real pairs, synthetic. Without these options
    the data and the cache key are those of earlier releases.
    """
    from deepexposure import data
    from deepexposure.image.segmentation import PREVIEW_SIZE, SEGMENTATION_VERSION, make_preview

    data.check_fivek_paired(fivek, fivek_paired)
    if pairs_repeat < 1:
        raise DataError(f"pairs_repeat must be at least 1, got {pairs_repeat}")
    real_pairs = [p for root in pairs for p in data.paired_folder(root)]
    if fivek_paired:
        fk_pairs, fivek_in = data.fivek_paired_inputs(fivek, "train_input", expert="C")
        real_pairs += fk_pairs
    else:
        fivek_in = data.fivek_inputs(fivek, "train_input") if fivek is not None else []
    fivek_ex = data.fivek_experts(fivek, "train_expert") if fivek is not None else []
    dcfg = data.DegradeConfig.from_dict(degrade or {})
    # the key names everything the cached arrays depend on, down to each file's size and mtime (a photo added to,
    # removed from or changed in a folder gives a new key); bump "v" when the cache format changes
    fields = {"v": 5, "segv": SEGMENTATION_VERSION, "degrade": dataclasses.asdict(dcfg),
              "degrade_size": degrade_size,
              "i": _file_list([*inputs, *fivek_in]), "s": _file_list(synthetic),
              "e": _file_list([*experts, *fivek_ex]),
              "c": _file_list(sice), "cr": _file_list(sice_references, extra=["sequences_guess.csv"]),
              "copies": copies, "seed": seed, "seg": segmentation}
    if real_pairs:  # only then: the key of a run without real pairs stays that of earlier releases
        fields["p"] = [[_file_entry(p.input_path), _file_entry(p.target_path)] for p in real_pairs]
        fields["prep"] = pairs_repeat
    key = json.dumps(fields, sort_keys=True)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"train-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                # the pairs skipped when it was built are reported again (a cache without that record: rebuilt)
                notes = [str(m) for m in z["pair_notes"]] if "pair_notes" in z.files else None
                if notes is not None or not real_pairs:
                    for msg in notes or []:
                        warnings.warn(msg, stacklevel=2)
                    return TrainData(z["inputs"], z["labels"], z["experts"], z["targets"], z["has_target"])
    pcache = None if cache_dir is None else Path(cache_dir) / "previews"
    in_paths: list = [*inputs]
    for root in sice:
        in_paths += data.select_sice(root)
    in_paths += fivek_in
    ex_paths: list = [*experts, *fivek_ex]
    parts, tparts, known = [], [], []
    if in_paths:
        real = data.load_previews(in_paths, cache_dir=pcache, progress=progress)[0]
        parts.append(real)
        tparts.append(np.zeros_like(real))
        known.append(np.zeros(len(real), bool))
    pair_notes: list[str] = []
    if real_pairs:
        px, py, _ = data.load_pair_previews(real_pairs, cache_dir=pcache, progress=progress, notes=pair_notes)
        parts.append(np.repeat(px, pairs_repeat, axis=0))  # output i * pairs_repeat + r is pair i
        tparts.append(np.repeat(py, pairs_repeat, axis=0))
        known.append(np.ones(len(px) * pairs_repeat, bool))
    syn_paths: list = [*synthetic]
    for root in sice_references:
        syn_paths += data.select_sice_references(root)
    if syn_paths:
        big = data.load_previews(syn_paths, size=degrade_size, cache_dir=pcache, progress=progress)[0]
        clean = np.stack([make_preview(b) for b in big]) if degrade_size != PREVIEW_SIZE else big
        parts.append(data.degraded_previews(big, seed=seed, copies=copies, config=dcfg, out_size=PREVIEW_SIZE))
        tparts.append(np.repeat(clean, copies, axis=0))  # output i * copies + c comes from preview i
        known.append(np.ones(len(clean) * copies, bool))
    if not parts:
        raise DataError("no input photos given (use --inputs, --synthetic-inputs, --sice, --sice-references, "
                        "--pairs or --fivek)")
    if not ex_paths:
        raise DataError("no expert photos given (use --experts or --fivek)")
    ins = np.concatenate(parts).astype(np.float32)
    exs = data.load_previews(ex_paths, cache_dir=pcache, progress=progress)[0].astype(np.float32)
    labels = segment_all(ins, segmentation)
    out = TrainData(ins, labels, exs, np.concatenate(tparts).astype(np.float32), np.concatenate(known))
    if cache is not None:
        atomic_write(cache, lambda fh: np.savez_compressed(  # unique temporary: parallel builds do not collide
            fh, inputs=ins, labels=labels, experts=exs, targets=out.targets, has_target=out.has_target,
            pair_notes=np.array(pair_notes, dtype=str)))
    return out
