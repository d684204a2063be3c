"""Methods to evaluate, all runnable by name through one interface (:class:`Method`).

Every method maps a float32 sRGB [0,1] (H,W,3) photo to a float32 sRGB [0,1] (H,W,3) photo at the same size.
Oracles (``needs_target = True``) see the target and give upper bounds for a family of edits; they are not
methods a user could run. Names (:func:`get_method`):

* ``identity``: the input unchanged.
* ``auto-exposure``: one global EV that meters the frame to mid-grey (camera "average" metering): the **mean**
  linear Rec.709 luminance (measured on a copy with long edge <= 256 px) is mapped to 0.18, i.e.
  ``ev = log2(0.18 / mean)``, bounded to [-4, +4] EV, applied by :func:`deepexposure.image.color.apply_ev`.
* ``clahe``: OpenCV CLAHE (clipLimit 2.0, 8x8 tiles) on the L channel of OpenCV's 8-bit Lab of the 8-bit image
  (a and b untouched), converted back; 8-bit quantisation is part of the method.
* ``fixed-fusion``: the "FI" pseudo multi-exposure fusion: ``render_fusion(srgb, [-1, +1, +2])`` (Mertens fusion
  of the original and the three exposures).
* ``oracle-global``: the best single global EV against the target (MSE in sRGB on copies with long edge
  <= 128 px): grid over [-4, 4] in 0.1 EV steps, then golden-section search in the best cell to 0.005 EV;
  applied to the full-resolution photo.
* ``oracle-recipe`` / ``oracle-recipe-fusion`` / ``oracle-recipe-rolloff``: the best EV per segment for the
  ``local`` / ``fusion`` / ``rolloff`` renderer (segments from the 64x64 preview with the shipped policy's
  segmentation, ``SEGMENT_DEFAULTS``): coordinate descent over segments, started
  at the oracle-global EV, each step a grid of 0.5 EV over [-4, 4] refined by a 0.1 EV grid within +-0.4 of the best,
  3 sweeps at most, on copies with long edge <= 128 px; rendered at full resolution.
* ``deepexposure`` / ``natural``: what ``enhance`` does by default (:class:`deepexposure.inference.enhance.Enhancer`): the
  shipped natural model (one global EV, ``rolloff``), natural look.
* ``expert``: the natural model in the ``expert`` look (the style fitted on the 14 FiveK expert-C pairs).
* ``paper``: the shipped DeepExposure policy (the paper's configuration), renderer as given (default ``fusion``).
* a path to a policy ``.onnx`` / ``policy.pt``, a global-EV ``.npz`` or a training run folder: that model through
  ``Enhancer(model=path)``.
* ``folder:PATH``: precomputed outputs in PATH, matched by file stem (e.g. a published method's results).
* ``learned-global:RUN``: the learned global-EV baseline fitted by ``deepexposure train`` on that run's data
  (:mod:`deepexposure.learning.learned_global`), one EV applied by the renderer given (``local`` and
  ``rolloff`` apply it globally; ``fusion`` fuses the original with it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from deepexposure.errors import DeepExposureError, ModelError, PhotoError
from deepexposure.image.color import apply_ev, luminance
from deepexposure.image.render import ENHANCE_RENDERER, NATURAL_RENDERER
from deepexposure.image.segmentation import reduce_long_edge
from deepexposure.inference.loader import MODEL_NAMES

__all__ = [
    "Method",
    "BASELINES",
    "ORACLES",
    "method_names",
    "get_method",
    "Identity",
    "AutoExposure",
    "Clahe",
    "FixedFusion",
    "OracleGlobal",
    "OracleRecipe",
    "ModelMethod",
    "FolderMethod",
    "LearnedGlobalMethod",
    "auto_exposure_ev",
    "oracle_global_ev",
    "oracle_recipe_evs",
]

EV_BOUND = 4.0
_ORACLE_LONG_EDGE = 128


@runtime_checkable
class Method(Protocol):
    """A photo-to-photo method. ``__call__(srgb float32 (H,W,3) [0,1], *, target=None) -> float32 (H,W,3) [0,1]``."""

    name: str
    needs_target: bool

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray: ...


def _f32(srgb: np.ndarray) -> np.ndarray:
    a = np.asarray(srgb)
    if a.ndim != 3 or a.shape[2] != 3 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"expected float sRGB (H, W, 3) in [0, 1], got {a.dtype} {a.shape}")
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def _small(srgb: np.ndarray, long_edge: int) -> np.ndarray:
    """INTER_AREA copy with long edge <= ``long_edge`` (never upscaled), float32."""
    return reduce_long_edge(np.ascontiguousarray(srgb, dtype=np.float32), long_edge)


def _needs_target(name: str, target: np.ndarray | None) -> np.ndarray:
    if target is None:
        raise DeepExposureError(f"method {name!r} is an oracle and needs the target photo")
    return _f32(target)


class Identity:
    """The input unchanged (a float32 copy)."""

    name = "identity"
    needs_target = False

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        return _f32(srgb).copy()


def auto_exposure_ev(srgb: np.ndarray, *, grey: float = 0.18, bound: float = EV_BOUND) -> float:
    """EV (stops) that maps the mean linear luminance of float sRGB (H,W,3) to ``grey``, clipped to +-``bound``."""
    mean = float(luminance(_small(_f32(srgb), 256)).mean())
    if mean <= 0:
        return bound
    return float(np.clip(math.log2(grey / mean), -bound, bound))


class AutoExposure:
    """Global EV metering the frame to 18% grey (mean linear luminance), bounded to +-4 EV."""

    name = "auto-exposure"
    needs_target = False

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        img = _f32(srgb)
        return apply_ev(img, auto_exposure_ev(img))


class Clahe:
    """OpenCV CLAHE on L of 8-bit Lab (clipLimit 2.0, tiles 8x8)."""

    name = "clahe"
    needs_target = False
    clip_limit = 2.0
    tiles = (8, 8)

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        u8 = np.floor(_f32(srgb) * 255 + 0.5).astype(np.uint8)
        lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=self.tiles)
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / np.float32(255)


class FixedFusion:
    """Pseudo multi-exposure fusion with fixed EVs -1, +1, +2 (plus the original) by the fusion renderer."""

    name = "fixed-fusion"
    needs_target = False
    evs = (-1.0, 1.0, 2.0)

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        from deepexposure.image.render import render_fusion

        return render_fusion(_f32(srgb), list(self.evs))


def _sse(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    d = d.ravel()
    return float(d @ d)


def _golden(f, lo: float, hi: float, tol: float) -> float:
    """Golden-section minimum of a unimodal f on [lo, hi] to ``tol``."""
    r = (math.sqrt(5) - 1) / 2
    c, d = hi - r * (hi - lo), lo + r * (hi - lo)
    fc, fd = f(c), f(d)
    while hi - lo > tol:
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - r * (hi - lo)
            fc = f(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + r * (hi - lo)
            fd = f(d)
    return (lo + hi) / 2


def oracle_global_ev(srgb: np.ndarray, target: np.ndarray, *, long_edge: int = _ORACLE_LONG_EDGE,
                     bound: float = EV_BOUND) -> float:
    """Global EV (stops, in [-bound, bound]) minimising the sRGB MSE of ``apply_ev(srgb, ev)`` to ``target``.

    Both float sRGB (H,W,3), compared on INTER_AREA copies with long edge <= ``long_edge``.
    """
    x = _small(_f32(srgb), long_edge)
    t = cv2.resize(_f32(target), (x.shape[1], x.shape[0]), interpolation=cv2.INTER_AREA)

    def cost(ev: float) -> float:
        return _sse(apply_ev(x, ev), t)

    grid = np.round(np.arange(-bound, bound + 1e-9, 0.1), 6)
    costs = [cost(float(e)) for e in grid]
    i = int(np.argmin(costs))
    lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    ev = _golden(cost, lo, hi, 0.005)
    return float(ev) if cost(ev) <= costs[i] else float(grid[i])


class OracleGlobal:
    """The best single global EV against the target (oracle; an upper bound of any global exposure)."""

    name = "oracle-global"
    needs_target = True

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        img = _f32(srgb)
        return apply_ev(img, oracle_global_ev(img, _needs_target(self.name, target)))


def _render_evs(img: np.ndarray, evs: list[float], labels: np.ndarray, renderer: str) -> np.ndarray:
    """``evs`` per segment of ``labels`` through :func:`deepexposure.image.render.render` with ``renderer``."""
    from deepexposure.image.recipe import Recipe
    from deepexposure.image.render import render

    return render(img, Recipe(evs=list(evs), labels=None if renderer == "fusion" else labels, renderer=renderer))


def oracle_recipe_evs(srgb: np.ndarray, target: np.ndarray, labels: np.ndarray, *, renderer: str = "local",
                      long_edge: int = _ORACLE_LONG_EDGE, sweeps: int = 3, bound: float = EV_BOUND) -> list[float]:
    """Per-segment EVs (stops) minimising the sRGB MSE of the ``renderer``'s output to ``target``.

    Coordinate descent on INTER_AREA copies (long edge <= ``long_edge``), started at the oracle global EV; each
    coordinate step tries a 0.5 EV grid over [-bound, bound] then a 0.1 EV grid within +-0.4 of the best.
    """
    x = _small(_f32(srgb), long_edge)
    t = cv2.resize(_f32(target), (x.shape[1], x.shape[0]), interpolation=cv2.INTER_AREA)
    n = int(np.asarray(labels).max()) + 1

    def cost(evs: list[float]) -> float:
        return _sse(_render_evs(x, evs, labels, renderer), t)

    g = oracle_global_ev(x, t, long_edge=long_edge, bound=bound)
    evs = [round(g, 3)] * n
    best = cost(evs)
    coarse = np.arange(-bound, bound + 1e-9, 0.5)
    for _ in range(sweeps):
        improved = False
        for k in range(n):
            for grid in (coarse, None):
                if grid is None:
                    grid = np.clip(evs[k] + np.arange(-0.4, 0.4001, 0.1), -bound, bound)
                for e in grid:
                    trial = list(evs)
                    trial[k] = round(float(e), 3)
                    if trial[k] == evs[k]:
                        continue
                    c = cost(trial)
                    if c < best - 1e-9:
                        best, evs, improved = c, trial, True
        if not improved:
            break
    return [float(e) for e in evs]


class OracleRecipe:
    """Best EV per segment for one of our renderers by direct search against the target (oracle)."""

    needs_target = True

    def __init__(self, renderer: str = "local", *, segmentation: dict | None = None) -> None:
        from deepexposure.image.segmentation import segmentation_params

        if renderer not in ("local", "fusion", "rolloff"):
            raise ValueError(f"unknown renderer {renderer!r}")
        self.renderer = renderer
        self.segmentation = segmentation_params(segmentation)  # over SEGMENT_DEFAULTS (the shipped policy's)
        self.name = "oracle-recipe" if renderer == "local" else f"oracle-recipe-{renderer}"

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        from deepexposure.image.segmentation import make_preview, segment

        img = _f32(srgb)
        tgt = _needs_target(self.name, target)
        labels = segment(make_preview(img), **self.segmentation)
        evs = oracle_recipe_evs(img, tgt, labels, renderer=self.renderer)
        self.last_evs, self.last_labels = evs, labels
        return _render_evs(img, evs, labels, self.renderer)


class ModelMethod:
    """A model through :class:`deepexposure.inference.enhance.Enhancer` (``model`` None = the shipped natural model;
    ``renderer`` None = the model's own; ``look`` None = natural)."""

    needs_target = False

    def __init__(self, model: str | Path | None = None, *, renderer: str | None = None, look: str | None = None,
                 name: str | None = None, highlight_guard: bool = True) -> None:
        from deepexposure.image.render import GUARDED_RENDERERS
        from deepexposure.inference.enhance import Enhancer

        self.enhancer = Enhancer(model=model, renderer=renderer, look=look, highlight_guard=highlight_guard)
        own = NATURAL_RENDERER if self.enhancer.is_global else ENHANCE_RENDERER
        renderer = self.enhancer.renderer
        self.name = name or ("deepexposure" if model is None else str(model) if str(model) in MODEL_NAMES
                             else _model_name(Path(model)))
        if renderer != own:
            self.name += f"[{renderer}]"
        if not highlight_guard and renderer in GUARDED_RENDERERS and not self.enhancer.is_global:
            self.name += "[unguarded]"

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        out, self.last_recipe = self.enhancer.enhance(_f32(srgb))
        return out


def _model_name(path: Path) -> str:
    """Short display name of a policy: the run folder's name (``runs/de1/policy.pt`` or ``.onnx`` -> ``de1``)."""
    if path.is_dir():
        return path.name
    return path.parent.name if path.stem == "policy" and path.parent.name else path.stem


class LearnedGlobalMethod:
    """``learned-global:RUN``: one global EV per photo from the run's fitted regressor, applied by ``renderer``."""

    needs_target = False

    def __init__(self, run: str | Path, *, renderer: str = ENHANCE_RENDERER) -> None:
        from deepexposure.errors import need_extra

        need_extra("torch", "the learned-global baseline")
        from deepexposure.learning.learned_global import LearnedGlobal

        self.model = LearnedGlobal.load(run)
        self.renderer = renderer
        self.name = f"learned-global[{_model_name(Path(run))}]"
        if renderer != ENHANCE_RENDERER:
            self.name += f"[{renderer}]"

    def ev(self, srgb: np.ndarray) -> float:
        """The predicted global EV (stops) of a float sRGB (H,W,3) photo."""
        from deepexposure.image.segmentation import make_preview

        return float(self.model.predict(make_preview(_f32(srgb))[None])[0])

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None) -> np.ndarray:
        from deepexposure.image.recipe import Recipe
        from deepexposure.image.render import render

        img = _f32(srgb)
        self.last_ev = self.ev(img)
        recipe = Recipe(evs=[self.last_ev], labels=None, renderer=self.renderer, model="learned-global")
        return render(img, recipe)


class FolderMethod:
    """Precomputed outputs in a folder, matched to the input by file stem (``folder:PATH``)."""

    needs_target = False
    needs_stem = True

    def __init__(self, folder: str | Path) -> None:
        from deepexposure.image.io import iter_photo_paths

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise PhotoError(f"folder:{folder}: not a folder")
        self.files = {p.stem: p for p in iter_photo_paths([self.folder])}
        if not self.files:
            raise PhotoError(f"folder:{folder}: no photos in it")
        self.name = self.folder.name

    def __call__(self, srgb: np.ndarray, *, target: np.ndarray | None = None, stem: str | None = None) -> np.ndarray:
        from deepexposure.image.io import read_photo

        if stem is None:
            raise DeepExposureError(f"method folder:{self.folder} needs the photo's stem")
        if stem not in self.files:
            raise PhotoError(f"folder:{self.folder}: no output for {stem}")
        out = read_photo(self.files[stem]).pixels
        if out.shape != np.shape(srgb):
            raise PhotoError(f"{self.files[stem]}: size {out.shape[1]}x{out.shape[0]} differs from the input's "
                             f"{np.shape(srgb)[1]}x{np.shape(srgb)[0]}")
        return out


BASELINES: dict[str, type] = {
    "identity": Identity,
    "auto-exposure": AutoExposure,
    "clahe": Clahe,
    "fixed-fusion": FixedFusion,
}
ORACLES = ("oracle-global", "oracle-recipe", "oracle-recipe-fusion", "oracle-recipe-rolloff")


def method_names() -> list[str]:
    """Every valid method name (paths and ``folder:PATH`` are accepted too)."""
    return [*BASELINES, *ORACLES, "deepexposure", *MODEL_NAMES, "expert"]


def get_method(name_or_path: str | Path, *, renderer: str | None = None, highlight_guard: bool = True
               ) -> Method:
    """Resolve a method by name (see the module docstring), a policy path / run folder, or ``folder:PATH``.

    ``renderer`` (one of :data:`deepexposure.image.render.RENDERERS`; None: each model's own) and ``highlight_guard``
    (as ``enhance``'s) apply to the models. The returned object has ``spec`` set to the
    arguments that re-create it (used to rebuild methods in worker processes).
    Raises :class:`DeepExposureError` for an unknown name, listing the valid ones.
    """
    spec = str(name_or_path)
    if spec in BASELINES:
        m = BASELINES[spec]()
    elif spec == "oracle-global":
        m = OracleGlobal()
    elif spec == "oracle-recipe":
        m = OracleRecipe("local")
    elif spec == "oracle-recipe-fusion":
        m = OracleRecipe("fusion")
    elif spec == "oracle-recipe-rolloff":
        m = OracleRecipe("rolloff")
    elif spec in ("deepexposure", "natural"):
        m = ModelMethod(None, renderer=renderer, highlight_guard=highlight_guard, name=spec)
    elif spec == "expert":
        m = ModelMethod(None, renderer=renderer, look="expert", highlight_guard=highlight_guard, name="expert")
    elif spec == "paper":
        m = ModelMethod("paper", renderer=renderer, highlight_guard=highlight_guard)
    elif spec.startswith("folder:"):
        m = FolderMethod(spec[len("folder:"):])
    elif spec.startswith("learned-global:"):
        m = LearnedGlobalMethod(spec[len("learned-global:"):], renderer=renderer or ENHANCE_RENDERER)
    elif Path(spec).exists():
        try:
            m = ModelMethod(spec, renderer=renderer, highlight_guard=highlight_guard)
        except ModelError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{spec}: cannot load a policy ({exc})") from exc
    else:
        raise DeepExposureError(f"unknown method {spec!r}; valid: {', '.join(method_names())}, "
                                "a policy .onnx/.pt file or run folder, folder:PATH or learned-global:RUN")
    m.spec = (spec, renderer, highlight_guard)
    return m
