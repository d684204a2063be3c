"""The Recipe: the exposure edits of one photo, readable and editable as a JSON sidecar.

A recipe holds one exposure value (EV stops) per segment, the 64x64 segment labels (run-length encoded in
JSON, row-major), the renderer and the model that chose the values. ``deepexposure render --recipe`` applies it
again, exactly; a user can edit the EVs and re-render.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepexposure.errors import DataError

__all__ = ["Recipe", "RECIPE_VERSION", "rle_encode", "rle_decode"]

RECIPE_VERSION = 1


def rle_encode(labels: np.ndarray) -> dict:
    """Row-major run-length code of an int label image: ``{"shape": [h, w], "values": [...], "counts": [...]}``."""
    flat = np.asarray(labels).ravel()
    if flat.size == 0:
        return {"shape": list(labels.shape), "values": [], "counts": []}
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    return {"shape": [int(s) for s in labels.shape], "values": flat[starts].astype(int).tolist(),
            "counts": counts.astype(int).tolist()}


def rle_decode(code: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode` -> int32 array."""
    shape = tuple(int(s) for s in code["shape"])
    counts = np.asarray(code["counts"], dtype=np.int64)
    values = np.asarray(code["values"], dtype=np.int32)
    if counts.sum() != math.prod(shape) or len(counts) != len(values) or (counts <= 0).any():
        raise ValueError("run lengths do not match the shape")
    return np.repeat(values, counts).reshape(shape)


@dataclass
class Recipe:
    """Exposure edits of one photo.

    ``evs``: EV stops per segment (fusion: one exposed copy each). ``labels``: (64, 64) int32 segment labels,
    None for a pure fusion recipe. ``renderer``: "fusion" or "local". ``model``: id of the policy (or "manual").
    ``segmentation``: parameters used to make ``labels``.
    """

    evs: list[float]
    labels: np.ndarray | None = None
    renderer: str = "fusion"
    model: str = "manual"
    segmentation: dict = field(default_factory=dict)
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        self.evs = [float(e) for e in self.evs]
        if not all(math.isfinite(e) for e in self.evs):
            raise DataError("recipe EVs must be finite numbers")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int32)
            n = int(self.labels.max()) + 1
            if self.labels.min() < 0 or n != len(self.evs):
                raise DataError(f"recipe has {len(self.evs)} EVs but its labels have {n} segments")

    @classmethod
    def from_evs(cls, evs, *, renderer: str = "fusion") -> Recipe:
        """A hand-made recipe without segments (for the fusion renderer)."""
        return cls(evs=list(evs), renderer=renderer)

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {
            "version": self.version,
            "renderer": self.renderer,
            "model": self.model,
            "evs": self.evs,
            "segmentation": self.segmentation,
            "labels": None if self.labels is None else rle_encode(self.labels),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        """Inverse of :meth:`to_dict`; raises :class:`DataError` on a malformed dict."""
        try:
            version = int(d.get("version", RECIPE_VERSION))
            if version > RECIPE_VERSION:
                raise DataError(f"recipe version {version} is newer than this deepexposure reads ({RECIPE_VERSION})")
            labels = None if d.get("labels") is None else rle_decode(d["labels"])
            return cls(evs=list(d["evs"]), labels=labels, renderer=str(d.get("renderer", "fusion")),
                       model=str(d.get("model", "manual")), segmentation=dict(d.get("segmentation") or {}),
                       version=version)
        except DataError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed recipe ({type(exc).__name__}: {exc})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        """Read a recipe JSON; a missing, unreadable or malformed file raises :class:`DataError`."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise DataError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not a recipe JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(d, dict):
            raise DataError(f"{path}: not a recipe JSON (expected an object)")
        try:
            return cls.from_dict(d)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
