"""The inference API: ``Enhancer().enhance(rgb) -> (out, recipe)``.

Two kinds of exposure model, and a look on top (:mod:`deepexposure.image.look`):

* the **natural** model (the default): boosted trees read one global EV from the 64x64 preview's exposure
  statistics (:mod:`deepexposure.inference.global_ev`, numpy only) and the ``rolloff`` renderer applies it: an exposure error
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
The returned :class:`~deepexposure.image.recipe.Recipe` holds the EVs actually applied (``strength`` included), so
``deepexposure render --recipe`` reproduces the output (bit-exact with ``local``; with ``fusion`` a rare value
may differ by one code, from threaded float summation) and a user can edit it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from deepexposure.errors import ModelError
from deepexposure.image.io import Photo, from_float, to_float
from deepexposure.image.look import DEFAULT_LOOK, Look, load_look, scaled_style
from deepexposure.image.recipe import Recipe
from deepexposure.image.render import (
    ENHANCE_RENDERER,
    GUARDED_RENDERERS,
    NATURAL_RENDERER,
    RENDERERS,
    guard_highlights,
    render,
)
from deepexposure.image.segmentation import PREVIEW_SIZE, make_preview, segment, segmentation_params
from deepexposure.inference.global_ev import GlobalEVModel
from deepexposure.inference.loader import load_model
from deepexposure.inference.onnx_policy import policy_segmentation
from deepexposure.logs import stage

__all__ = ["Enhancer", "FLOAT_MAX"]

#: A float image above this is taken for 0..255 (or 0..65535) data, not [0, 1], and refused (a small overshoot
#: above 1 from earlier processing is clipped).
FLOAT_MAX = 1.5


class Enhancer:
    """Fix the exposure of photos: an exposure model, a renderer and a look.

    ``model``: None or ``"natural"`` (the shipped natural model: one global EV from boosted trees, numpy only),
    ``"paper"`` (the shipped DeepExposure policy, ONNX), a global-EV ``.npz``, a policy ``.onnx`` or ``policy.pt``
    file, or a training run folder (its ``policy.onnx`` if present, else its ``policy.pt``); ``.pt`` files need
    torch (the ``train`` extra).
    ``look``: ``"natural"`` (default: the exposure alone), ``"expert"`` (the style fitted on real FiveK expert C
    pairs), a look file (``.json``) or a :class:`~deepexposure.image.look.Look`.
    ``renderer``: one of :data:`deepexposure.image.render.RENDERERS`; None = the model's own: ``rolloff`` for global-EV
    models (:data:`~deepexposure.image.render.NATURAL_RENDERER`), ``fusion`` for policies
    (:data:`~deepexposure.image.render.ENHANCE_RENDERER`, the paper's test stage).
    ``strength``: in [0, 1], scales every EV and the look's style (0 returns the photo unchanged).
    ``highlight_guard``: with a policy and the ``local``, ``rolloff`` and ``balanced`` renderers, lower each positive
    EV so that its segment's brightest 5% do not clip (:func:`deepexposure.image.render.guard_highlights`; docs/learning.md
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
        """Enhance a :class:`~deepexposure.image.io.Photo`; metadata, alpha and bit depth are carried over."""
        out, recipe = self._run(photo.pixels)
        return dataclasses.replace(photo, pixels=out), recipe

    def _run(self, srgb: np.ndarray) -> tuple[np.ndarray, Recipe]:
        with stage("model"):
            recipe = self.recipe(srgb)
        return render(srgb, recipe, renderer=self.renderer), recipe
