"""The Recipe: the exposure edits of one photo, readable and editable as a JSON sidecar.

A recipe holds one exposure value (EV stops) per segment, the 64x64 segment labels, the renderer and the model
that chose the values, and the segmentation parameters used. ``deepexposure render --recipe`` applies it again
(bit-exact with the local renderer; with fusion, threaded float sums may move a rare value by one code); a user can
edit the EVs and re-render. With the fusion renderer an EV is not a brightness knob: raising one adds a brighter
copy to the fusion, whose well-exposedness weights decide where it is used.

JSON form (one key per line, values compact)::

    {
     "version": 2,
     "renderer": "local",
     "model": "manual",
     "evs": [1.25, 0.5, -0.3],
     "segmentation": {"max_segments": 6, ...},
     "labels": {"shape": [64, 64], "values": [0, 2, ...], "counts": [17, 5, ...]},
     "look": "expert",
     "style": {"ev_offset": 0.25, "bracket": [-1.0, 1.0], "contrast": 1.2, "saturation": 1.05}
    }

``look`` names the look (``natural``, ``expert`` or a user's look file's name) and ``style`` holds its style stage
(:class:`deepexposure.image.look.Style`; null for the natural look), applied after the EVs: the EVs already include the
style's ``ev_offset``, so a recipe re-renders exactly without the look file. Version 1 recipes (no look) read as
the natural look.

``labels`` is null for a recipe without segments (fusion), otherwise run-length coded in row-major order:
the flattened labels are ``values[i]`` repeated ``counts[i]`` times, for i in order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepexposure.atomic import atomic_write_text
from deepexposure.errors import DataError

__all__ = ["Recipe", "RECIPE_VERSION", "MAX_ABS_EV", "MAX_LABEL_CELLS", "rle_encode", "rle_decode", "MAX_RECIPE_BYTES"]

RECIPE_VERSION = 2
#: A recipe file larger than this is not read (one with 64x64 labels run-length coded is a few KiB).
MAX_RECIPE_BYTES = 1 << 20
#: The look of a recipe without one (version 1 recipes): the exposure alone.
NATURAL = "natural"
#: Exposure values are limited to +-MAX_ABS_EV stops (x1024 or /1024 in linear light: far beyond any useful edit;
#: larger values overflow float32 arithmetic).
MAX_ABS_EV = 10.0
_RENDERERS = ("fusion", "local", "rolloff", "balanced")  # the names of deepexposure.image.render.RENDERERS (not imported: no cycle, no cv2)


def rle_encode(labels: np.ndarray) -> dict:
    """Row-major run-length code of a 2-D int label image: ``{"shape": [h, w], "values": [...], "counts": [...]}``."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    if flat.size == 0:
        return {"shape": [int(s) for s in labels.shape], "values": [], "counts": []}
    starts = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    return {"shape": [int(s) for s in labels.shape], "values": [int(v) for v in flat[starts]],
            "counts": [int(c) for c in counts]}


def _int_list(x, name: str) -> list[int]:
    if not isinstance(x, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        raise DataError(f"labels {name} must be a list of integers")
    return x


#: Most cells a recipe's segment labels may declare (4096 x 4096, 64 MiB decoded): deepexposure writes 64 x 64, and
#: a declared shape is checked before anything is allocated (a 1 KB file could otherwise ask for gigabytes).
MAX_LABEL_CELLS = 4096 * 4096
#: Checks of the known ``segmentation`` keys of a recipe (those of ``segmentation.SEGMENT_DEFAULTS``): integer
#: or not, lowest, highest. The highest ``sigma`` bounds the smoothing kernel (its size grows with it).
_SEGMENTATION_RANGES = {"max_segments": (True, 1, MAX_LABEL_CELLS), "scale": (False, 0.0, 1e9),
                        "sigma": (False, 0.0, 100.0), "min_size": (True, 0, MAX_LABEL_CELLS)}


def _check_segmentation(seg: dict) -> None:
    """Raise :class:`DataError` naming the key (``segmentation.sigma``) when a known segmentation parameter is not
    a number in its range (:data:`_SEGMENTATION_RANGES`), before it reaches the segmentation of a photo."""
    for key, (integer, low, high) in _SEGMENTATION_RANGES.items():
        if key not in seg:
            continue
        v = seg[key]
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or (
                integer and not float(v).is_integer()) or not (math.isfinite(v) and low <= v <= high):
            bounds = f"{low:,} to {high:,}" if integer else f"{low:g} to {high:g}"
            raise DataError(f"recipe segmentation.{key} must be {kind} from {bounds}, got {v!r}")


def rle_decode(code: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode` -> int32 array; raises :class:`DataError` on a malformed code."""
    if not isinstance(code, dict):
        raise DataError("labels must be an object with shape, values and counts")
    try:
        shape, values, counts = code["shape"], code["values"], code["counts"]
    except KeyError as exc:
        raise DataError(f"labels lack the key {exc.args[0]!r}") from None
    shape = _int_list(shape, "shape")
    values, counts = _int_list(values, "values"), _int_list(counts, "counts")
    if len(shape) != 2 or min(shape) < 1:
        raise DataError(f"labels shape must be two positive integers, got {shape}")
    if math.prod(shape) > MAX_LABEL_CELLS:
        raise DataError(f"labels shape {shape} declares {math.prod(shape):,} cells, above the {MAX_LABEL_CELLS:,} a "
                        f"recipe's segment labels may have (deepexposure writes 64 x 64)")
    if len(values) != len(counts) or any(c < 1 for c in counts) or sum(counts) != math.prod(shape):
        raise DataError("labels run lengths do not match their shape")
    if any(v < 0 or v > 2**31 - 1 for v in values):
        raise DataError("labels values must be non-negative 32-bit integers")
    return np.repeat(np.asarray(values, dtype=np.int32), counts).reshape(shape)


def _jsonable(x):
    """numpy scalars and arrays (e.g. in segmentation parameters) as plain JSON values."""
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


@dataclass(eq=False)
class Recipe:
    """Exposure edits of one photo.

    ``evs``: EV stops, one per segment (fusion: one exposed copy each). ``labels``: (64, 64) int32 segment
    labels 0..len(evs)-1, or None for a recipe without segments (fusion only). ``renderer``: "fusion" or
    "local". ``model``: id of the policy that chose the EVs, or "manual". ``segmentation``: the parameters
    of :func:`deepexposure.image.segmentation.segment` that made ``labels``. ``version``: format version.
    ``look``: the look's name; ``style``: its :class:`deepexposure.image.look.Style` as a dict (None: exposure only).
    Invalid values raise :class:`~deepexposure.errors.DataError`.
    """

    evs: list[float]
    labels: np.ndarray | None = None
    renderer: str = "fusion"
    model: str = "manual"
    segmentation: dict = field(default_factory=dict)
    version: int = RECIPE_VERSION
    look: str = NATURAL
    style: dict | None = None

    def __post_init__(self) -> None:
        try:
            self.evs = [float(e) for e in self.evs]
        except (TypeError, ValueError):
            raise DataError(f"recipe EVs must be numbers, got {self.evs!r}") from None
        if not all(math.isfinite(e) for e in self.evs):
            raise DataError(f"recipe EVs must be finite numbers, got {self.evs}")
        if any(abs(e) > MAX_ABS_EV for e in self.evs):
            raise DataError(f"recipe EVs must be from -{MAX_ABS_EV:g} to {MAX_ABS_EV:g} stops, got {self.evs}")
        if self.renderer not in _RENDERERS:
            raise DataError(f"unknown renderer {self.renderer!r} in recipe; valid renderers: {', '.join(_RENDERERS)}")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise DataError(f"recipe version must be a positive integer, got {self.version!r}")
        if self.version > RECIPE_VERSION:
            raise DataError(f"recipe version {self.version} is newer than this deepexposure reads ({RECIPE_VERSION})")
        if not isinstance(self.segmentation, dict):
            raise DataError("recipe segmentation parameters must be an object")
        _check_segmentation(self.segmentation)
        self.model = str(self.model)
        if not isinstance(self.look, str) or not 1 <= len(self.look) <= 64 or not self.look.isprintable():
            raise DataError(f"recipe look must be a name of 1-64 printable characters, got {self.look[:64]!r}"
                            if isinstance(self.look, str) else f"recipe look must be a name, got {type(self.look).__name__}")
        if self.style is not None:
            from deepexposure.image.look import Style  # validates the style's fields and bounds

            self.style = Style.from_dict(self.style).to_dict()
            self.version = max(self.version, 2)  # version 1 readers would drop the style
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim != 2 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"recipe labels must be a non-empty 2-D integer array, got {labels.dtype} {labels.shape}")
            if labels.min() < 0:
                raise DataError("recipe labels must be non-negative")
            n = int(labels.max()) + 1
            if n != len(self.evs):
                raise DataError(f"recipe has {len(self.evs)} EVs but its labels have {n} segments")
            self.labels = labels.astype(np.int32)

    @classmethod
    def from_evs(cls, evs: Iterable[float], *, renderer: str = "fusion") -> Recipe:
        """A hand-made recipe without segments (e.g. ``render --ev``), model ``"manual"``."""
        return cls(evs=list(evs), renderer=renderer)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recipe):
            return NotImplemented
        same_labels = (self.labels is None and other.labels is None) or (
            self.labels is not None and other.labels is not None and np.array_equal(self.labels, other.labels))
        return (same_labels and self.evs == other.evs and self.renderer == other.renderer
                and self.model == other.model and self.segmentation == other.segmentation
                and self.version == other.version and self.look == other.look and self.style == other.style)

    def to_dict(self) -> dict:
        """JSON-able form (labels run-length coded, see the module doc)."""
        return {
            "version": self.version,
            "renderer": self.renderer,
            "model": self.model,
            "evs": list(self.evs),
            "segmentation": dict(self.segmentation),
            "labels": None if self.labels is None else rle_encode(self.labels),
            "look": self.look,
            "style": None if self.style is None else dict(self.style),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        """Inverse of :meth:`to_dict`; raises :class:`DataError` on a malformed dict."""
        if not isinstance(d, dict):
            raise DataError("a recipe must be a JSON object")
        if "evs" not in d:
            raise DataError("recipe lacks the key 'evs'")
        evs = d["evs"]
        if not isinstance(evs, list) or not all(
                isinstance(e, int | float) and not isinstance(e, bool) for e in evs):
            raise DataError("recipe 'evs' must be a list of numbers")
        model = d.get("model", "manual")
        renderer = d.get("renderer", "fusion")
        if not isinstance(model, str) or not isinstance(renderer, str):
            raise DataError("recipe 'model' and 'renderer' must be strings")
        labels = None if d.get("labels") is None else rle_decode(d["labels"])
        return cls(evs=evs, labels=labels, renderer=renderer, model=model,
                   segmentation=d.get("segmentation") or {}, version=d.get("version", RECIPE_VERSION),
                   look=d.get("look", NATURAL), style=d.get("style"))

    def to_json(self) -> str:
        """The JSON text: one top-level key per line, each value compact (EVs and labels on one line)."""
        items = [f" {json.dumps(k)}: {json.dumps(v, allow_nan=False, default=_jsonable)}"
                 for k, v in self.to_dict().items()]
        return "{\n" + ",\n".join(items) + "\n}\n"

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the JSON to ``path`` atomically (:mod:`deepexposure.atomic`); returns the path.

        Without ``overwrite`` an existing file (e.g. a hand-edited recipe) is never replaced: :class:`DataError`.
        Any write failure is a :class:`DataError` and leaves no file behind.
        """
        path = Path(path)
        try:
            return atomic_write_text(path, self.to_json(), overwrite=overwrite)
        except FileExistsError:
            raise DataError(f"{path}: recipe already exists (pass --overwrite to replace it)") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot write recipe ({exc.strerror or exc})") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        """Read a recipe JSON; a missing, unreadable, malformed or too new file raises :class:`DataError`."""
        from deepexposure.atomic import read_small

        path = Path(path)
        try:
            text = read_small(path, MAX_RECIPE_BYTES).decode("utf-8")
        except OSError as exc:
            raise DataError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a recipe JSON (not UTF-8 text)") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not a recipe JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise DataError(f"{path}: not a recipe JSON (nested too deeply)") from None
        try:
            return cls.from_dict(d)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
