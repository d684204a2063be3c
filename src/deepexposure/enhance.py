"""The inference API: ``Enhancer().enhance(rgb) -> (out, recipe)``.

Two kinds of exposure model, and a look on top (:mod:`deepexposure.look`):

* the **natural** model (the default): boosted trees read one global EV from the 64x64 preview's exposure
  statistics (:mod:`deepexposure.global_ev`, numpy only) and the ``rolloff`` renderer applies it: an exposure error
  is undone, a well-exposed photo comes back nearly unchanged;
* a **policy** (``model="paper"``: the shipped DeepExposure policy, or a training run / policy file), the paper's
  test stage described below.

The look (``natural`` by default, ``expert``, or a look file) adds its style after the exposure: its EV offset goes
into the recipe's EVs, its bracket/contrast/saturation into the recipe's ``style``.

The paper's test stage: the photo is reduced to a 64x64 preview, segmented (Felzenszwalb-Huttenlocher, the
parameters the policy was trained with), the policy (the shipped ``policy.onnx`` run by ONNX Runtime, no torch; a
torch ``policy.pt`` where torch is installed) picks one exposure value (EV stops) per segment, and the
exposures are applied to the full-resolution photo by a renderer (``fusion``: Mertens fusion of the whole photo
exposed by each EV plus the original; ``local``: each EV inside its own feathered segment mask; ``rolloff``: local
with a highlight roll-off).
The returned :class:`~deepexposure.recipe.Recipe` holds the EVs actually applied (``strength`` included), so
``deepexposure render --recipe`` reproduces the output (bit-exact with ``local``; with ``fusion`` a rare value
may differ by one code, from threaded float summation) and a user can edit it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from deepexposure.errors import ModelError, need_extra
from deepexposure.global_ev import GlobalEVModel, default_natural_path
from deepexposure.io import Photo, from_float, read_head, to_float
from deepexposure.look import DEFAULT_LOOK, Look, load_look, scaled_style
from deepexposure.onnx_policy import PolicyBase, file_sha256, policy_segmentation
from deepexposure.recipe import Recipe
from deepexposure.render import (
    ENHANCE_RENDERER,
    GUARDED_RENDERERS,
    NATURAL_RENDERER,
    RENDERERS,
    guard_highlights,
    render,
)
from deepexposure.segmentation import PREVIEW_SIZE, make_preview, segment, segmentation_params

__all__ = ["Enhancer", "default_model_path", "model_segmentation", "resolve_model", "load_policy", "load_model",
           "MODEL_NAMES", "is_global_model"]

#: Model names ``--model`` accepts besides paths: ``natural`` (the default global-EV model) and ``paper`` (the
#: shipped DeepExposure policy, the paper's configuration).
MODEL_NAMES = ("natural", "paper")

#: A float image above this is taken for 0..255 (or 0..65535) data, not [0, 1], and refused (a small overshoot
#: above 1 from earlier processing is clipped).
FLOAT_MAX = 1.5


def default_model_path(fmt: str = "onnx") -> Path:
    """Path of the policy shipped inside the package (``--model paper``): ``deepexposure/assets/policy.onnx`` (runs
    without torch), or with ``fmt="pt"`` the torch ``policy.pt`` it was exported from (same model id)."""
    if fmt not in ("onnx", "pt"):
        raise ValueError(f"fmt must be 'onnx' or 'pt', got {fmt!r}")
    return Path(str(resources.files("deepexposure") / "assets" / f"policy.{fmt}"))


def is_global_model(model: str | os.PathLike | None) -> bool:
    """Whether ``model`` names a global-EV model: None or ``natural`` (the shipped one) or an ``.npz`` file."""
    return model is None or str(model) == "natural" or (
        str(model) not in MODEL_NAMES and Path(model).suffix.lower() == ".npz" and not Path(model).is_dir())


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The model file of ``model``: None or ``natural`` = the shipped natural model (``natural.npz``); ``paper`` =
    the shipped policy; a training run folder = its ``policy.onnx`` if present, else its ``policy.pt``; a file as
    it is. Missing files raise :class:`ModelError`. (Whether a run folder's ``policy.onnx`` is the export of its
    ``policy.pt`` is checked by :func:`load_model`.)"""
    if model is None or str(model) == "natural":
        path = default_natural_path()
        if not path.is_file():
            raise ModelError(f"the shipped natural model is missing ({path}); reinstall deepexposure or pass --model")
        return path
    if str(model) == "paper":
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"the shipped model is missing ({path}); reinstall deepexposure or pass --model")
        return path
    path = Path(model)
    if path.is_dir():  # a training run folder
        onnx_file, pt_file = path / "policy.onnx", path / "policy.pt"
        if onnx_file.is_file():
            return onnx_file
        if not pt_file.is_file():
            raise ModelError(f"{path} is a folder without a policy.onnx or policy.pt (not a training run)")
        path = pt_file
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    return path


def load_policy(path: str | os.PathLike, *, device: str | None = None) -> PolicyBase:
    """Load a policy file: ``.onnx`` through ONNX Runtime (no torch), anything else as a torch ``policy.pt``
    (needs the training extra). ``device``: cpu, cuda, cuda:N (and mps for .pt); None = CUDA when present.
    A file whose content is the other format than its suffix says (a renamed file) raises :class:`ModelError`
    saying so, before torch is needed."""
    path = Path(path)
    head = read_head(path, 4)
    is_zip = head.startswith(b"PK\x03\x04")  # torch.save's zip archive
    if path.suffix.lower() == ".onnx":
        if is_zip:
            raise ModelError(f"{path} is a torch policy file (a zip archive), not an ONNX model: name it .pt, or "
                             "export it with deepexposure export-onnx")
        from deepexposure.onnx_policy import OnnxPolicy

        return OnnxPolicy.load(path, device=device)
    if head[:1] == b"\x08" and not is_zip:  # an ONNX ModelProto starts with its ir_version field (tag 0x08)
        raise ModelError(f"{path} looks like an ONNX model, not a torch policy.pt: name it .onnx")
    need_extra("torch", f"the torch policy {path} (use its ONNX export, or install torch)")
    from deepexposure.policy import Policy

    return Policy.load(path, device=device)


def _check_run_folder(folder: Path, onnx_file: Path, policy: PolicyBase) -> None:
    """Warn when a run folder's ``policy.onnx`` is not the export of its ``policy.pt``: by the SHA-256 of the
    ``policy.pt`` it was exported from (stored by export-onnx), else (older exports) when the ``.pt`` is newer."""
    pt_file = folder / "policy.pt"
    if not pt_file.is_file():
        return
    redo = f"re-export with deepexposure export-onnx {folder} -o {onnx_file} --overwrite"
    source = getattr(policy, "source_sha256", None)
    if source:
        if file_sha256(pt_file) != source:
            warnings.warn(f"{onnx_file} was not exported from {pt_file} (another or a changed file); using "
                          f"{onnx_file.name} (model {policy.model_id}) anyway ({redo})", stacklevel=3)
    elif pt_file.stat().st_mtime > onnx_file.stat().st_mtime:
        warnings.warn(f"{onnx_file} is older than {pt_file}; using it anyway ({redo})", stacklevel=3)


def load_model(model: str | os.PathLike | None, *, device: str | None = None
               ) -> tuple[Path, PolicyBase | GlobalEVModel]:
    """(path, model) of ``model`` (see :func:`resolve_model`): a :class:`GlobalEVModel` for the natural model or an
    ``.npz``, else a policy; warns when a run folder's ``policy.onnx`` is not the export of its ``policy.pt``."""
    path = resolve_model(model)
    if is_global_model(model):
        return path, GlobalEVModel.load(path)
    policy = load_policy(path, device=device)
    if model is not None and str(model) not in MODEL_NAMES and Path(model).is_dir() and path.suffix.lower() == ".onnx":
        _check_run_folder(Path(model), path, policy)
    return path, policy


def model_segmentation(model: str | os.PathLike | None = None) -> dict:
    """The :func:`segment` parameters of a policy (a policy file or a run folder); for None and the global-EV models
    (which use no segments), those of the shipped policy (``paper``)."""
    if is_global_model(model):
        model = "paper"
    return policy_segmentation(load_model(model, device="cpu")[1])


class Enhancer:
    """Fix the exposure of photos: an exposure model, a renderer and a look.

    ``model``: None or ``"natural"`` (the shipped natural model: one global EV from boosted trees, numpy only),
    ``"paper"`` (the shipped DeepExposure policy, ONNX), a global-EV ``.npz``, a policy ``.onnx`` or ``policy.pt``
    file, or a training run folder (its ``policy.onnx`` if present, else its ``policy.pt``); ``.pt`` files need
    torch (the ``train`` extra).
    ``look``: ``"natural"`` (default: the exposure alone), ``"expert"`` (the style fitted on real FiveK expert C
    pairs), a look file (``.json``) or a :class:`~deepexposure.look.Look`.
    ``renderer``: one of :data:`deepexposure.render.RENDERERS`; None = the model's own: ``rolloff`` for global-EV
    models (:data:`~deepexposure.render.NATURAL_RENDERER`), ``fusion`` for policies
    (:data:`~deepexposure.render.ENHANCE_RENDERER`, the paper's test stage).
    ``strength``: in [0, 1], scales every EV and the look's style (0 returns the photo unchanged).
    ``highlight_guard``: with a policy and the ``local``, ``rolloff`` and ``balanced`` renderers, lower each positive
    EV so that its segment's brightest 5% do not clip (:func:`deepexposure.render.guard_highlights`; docs/learning.md
    finding 25); the recipe holds the guarded EVs. ``fusion`` and global EVs are never guarded.
    ``device``: where a policy runs: ``cpu``, ``cuda``, ``cuda:N`` (ONNX Runtime providers for .onnx models,
    torch devices for .pt, where ``mps`` works too); default CUDA when present, else CPU.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, look: str | os.PathLike | Look | None = DEFAULT_LOOK,
                 renderer: str | None = None, strength: float = 1.0, device: str | None = None,
                 highlight_guard: bool = True) -> None:
        if renderer is not None and renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {renderer!r}; choose from {', '.join(RENDERERS)}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.look = load_look(look)
        self.model_path, self.policy = load_model(model, device=device)
        self.is_global = isinstance(self.policy, GlobalEVModel)
        if self.is_global:
            self.segmentation: dict = {}
        else:
            size = self.policy.arch.get("size", PREVIEW_SIZE)
            if size != PREVIEW_SIZE:
                raise ModelError(f"{self.model_path}: the policy was trained on {size}x{size} previews; enhance "
                                 f"uses {PREVIEW_SIZE}x{PREVIEW_SIZE}")
            self.segmentation = policy_segmentation(self.policy)
        self.renderer = renderer or (NATURAL_RENDERER if self.is_global else ENHANCE_RENDERER)
        self.strength = float(strength)
        self.highlight_guard = bool(highlight_guard)

    @property
    def model_id(self) -> str:
        """Id of the model that picks the EVs (recipes name it): the policy's, or the global-EV model's."""
        return self.policy.model_id

    def recipe(self, srgb: np.ndarray, *, per_segment: bool = False) -> Recipe:
        """The recipe (EVs per segment, labels, look) for a float32 sRGB [0,1] (H,W,3) image.

        ``per_segment``: for a global-EV model, also segment the preview (default :func:`segment` parameters) and
        give every segment the global EV, so that an editor has one slider per segment to adjust; untouched, it
        renders as the one EV does (the soft masks sum to one). Not with ``fusion``, which would fuse one copy per
        segment instead of one. Policies always give one EV per segment.
        """
        preview = make_preview(srgb)
        style = self.look.style
        segmentation = dict(self.segmentation)
        if self.is_global:
            ev = np.asarray(self.policy.predict(preview), dtype=np.float64)[:1]
            labels = None
            if per_segment and self.renderer != "fusion":
                segmentation = segmentation_params()
                labels = segment(preview, **segmentation)
            evs = np.repeat(ev, 1 if labels is None else int(labels.max()) + 1)
        else:
            labels = segment(preview, **self.segmentation)
            evs = np.asarray(self.policy.predict(preview, labels), dtype=np.float64)
        evs = (evs * style.ev_scale + style.ev_offset) * self.strength
        if self.highlight_guard and not self.is_global and self.renderer in GUARDED_RENDERERS:
            evs = np.asarray(guard_highlights(srgb, evs, labels), dtype=np.float64)
        applied = scaled_style(style, self.strength)
        return Recipe(evs=[round(float(e), 6) for e in evs], labels=labels, renderer=self.renderer,
                      model=self.model_id, segmentation=segmentation, look=self.look.name,
                      style=None if style.is_identity else applied.to_dict())

    def enhance(self, image: np.ndarray) -> tuple[np.ndarray, Recipe]:
        """Enhance a numpy image (H,W,3) or (H,W): uint8, uint16 or float in [0,1].

        An empty image, or a float image with values above :data:`FLOAT_MAX` (0..255 data) or none finite,
        raises ``ValueError``. Returns the result with the input's dtype and range (float in, float32 out) and the recipe.
        """
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3) image, got shape {np.shape(image)}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"the image has no pixels (shape {arr.shape})")
        if np.issubdtype(arr.dtype, np.floating):
            peak = float(np.nanmax(arr[..., :3])) if np.isfinite(arr[..., :3]).any() else float("nan")
            if not np.isfinite(peak) or peak > FLOAT_MAX:
                raise ValueError(f"a float image must hold values in [0, 1], but its maximum is {peak:g} "
                                 "(for 0..255 data divide by 255 or pass uint8)")
        srgb, bit_depth = to_float(arr[..., :3])
        out, recipe = self._run(srgb)
        if np.issubdtype(arr.dtype, np.integer):
            res = from_float(out, bit_depth)
        else:
            res = out
        if arr.shape[2] == 4:
            res = np.concatenate([res, arr[..., 3:].astype(res.dtype)], axis=2)
        return res, recipe

    def enhance_photo(self, photo: Photo) -> tuple[Photo, Recipe]:
        """Enhance a :class:`~deepexposure.io.Photo`; metadata, alpha and bit depth are carried over."""
        out, recipe = self._run(photo.pixels)
        return dataclasses.replace(photo, pixels=out), recipe

    def _run(self, srgb: np.ndarray) -> tuple[np.ndarray, Recipe]:
        recipe = self.recipe(srgb)
        return render(srgb, recipe, renderer=self.renderer), recipe
