"""Data sets: synthetic exposure errors, 64x64 previews, paired folders, the MIT-Adobe FiveK protocol, dev pairs.

Images are float32 gamma-encoded sRGB in [0, 1], shape (H, W, 3); previews are stacked as (N, size, size, 3).
Exposure values are EV stops in linear light (see :mod:`deepexposure.color`). The data notes (which shared folder
is used for what, measured counts, the degradation model) are in ``docs/data.md``. Pure numpy: no torch here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import logging
import math
import os
import re
import shutil
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from deepexposure.atomic import atomic_write, atomic_write_text, clean_stale, temp_path
from deepexposure.color import linear_to_srgb, srgb_to_linear
from deepexposure.errors import DataError, PhotoError
from deepexposure.io import iter_photo_paths, read_photo, write_photo
from deepexposure.segmentation import make_preview, reduce_long_edge

__all__ = [
    "DegradeConfig",
    "FAMILIES",
    "CAMERA_CURVES",
    "degrade",
    "degrade_field",
    "degradation_ev_map",
    "degraded_previews",
    "load_previews",
    "Pair",
    "paired_folder",
    "PAIR_ASPECT_TOLERANCE",
    "load_pair_previews",
    "FIVEK_FOLDS",
    "FIVEK_INPUT_DIRS",
    "FIVEK_EXPERT_DIRS",
    "fivek_expert_dirs",
    "fivek_fold_ids",
    "fivek_pairs",
    "fivek_inputs",
    "fivek_experts",
    "fivek_paired_inputs",
    "check_fivek_paired",
    "make_dev_pairs",
    "select_sice",
    "select_sice_references",
    "SICE_DARK_MAX",
    "SICE_BRIGHT_MIN",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# Synthetic exposure errors
# --------------------------------------------------------------------------------------------------------------


#: Degradation families (see :func:`degrade` and docs/data.md); the global EV offset is always drawn.
FAMILIES = ("spatial", "tone", "white_balance", "noise", "highlights", "camera_curve", "jpeg")
#: Camera tone curves of the ``camera_curve`` family (instead of the sRGB encoding).
CAMERA_CURVES = ("gamma22", "filmic", "flat_log")


@dataclass(frozen=True)
class DegradeConfig:
    """Parameters of the synthetic exposure errors (see :func:`degrade`). Units: EV stops unless stated.

    Each copy draws a global EV offset and switches every family of ``families`` on with probability
    ``p_family`` (those in ``always`` are always on). :meth:`v1` is the single error model of earlier releases.
    """

    p_correct: float = 0.25
    """Probability that the global offset is about 0 (a correctly exposed shot), uniform in +-``correct_ev``."""
    correct_ev: float = 0.2
    """Bound of the global offset of a correctly exposed shot."""
    under_ev: tuple[float, float] = (-3.0, -0.3)
    """Range of the global EV offset when the shot is under-exposed (uniform)."""
    over_ev: tuple[float, float] = (0.3, 2.0)
    """Range of the global EV offset when the shot is over-exposed (uniform; highlights clip)."""
    p_under: float = 0.65
    """Probability that a shot that is not correct is under-exposed rather than over-exposed."""
    families: tuple[str, ...] = FAMILIES
    """Families that may be switched on (a subset of :data:`FAMILIES`)."""
    p_family: float = 0.35
    """Probability that each family of ``families`` is on for one copy (independently)."""
    always: tuple[str, ...] = ()
    """Families on in every copy (e.g. a development set of one family)."""
    gradient_ev: float = 0.6
    """``spatial``: largest half-amplitude of the linear EV gradient across the frame (uneven light)."""
    max_blobs: int = 2
    """``spatial``: the number of broad Gaussian EV blobs is uniform in 0..max_blobs (backlight, flash fall-off)."""
    blob_ev: float = 1.0
    """``spatial``: largest absolute peak of one blob, EV."""
    blob_sigma: tuple[float, float] = (0.15, 0.45)
    """``spatial``: range of a blob's standard deviation, as a fraction of the frame's width and height."""
    vignette_ev: tuple[float, float] = (0.0, 1.2)
    """``spatial``: range of the radial fall-off at the frame corners, EV (0 at the centre)."""
    local_max_ev: float = 1.2
    """``spatial``: the local field is scaled down so that its magnitude never exceeds this."""
    tone_contrast: tuple[float, float] = (0.6, 1.6)
    """``tone``: range of the contrast of log luminance around mid-grey (> 1 crushes shadows and blows
    highlights, < 1 flattens): an EV error that follows the scene's own luminance."""
    wb_sigma: float = 0.12
    """``white_balance``: standard deviation of the log2 gain of R and B (a grey keeps its luminance)."""
    noise_level: tuple[float, float] = (2e-4, 2e-3)
    """``noise``: range of the shot-noise variance per unit of linear signal at 0 EV; it grows by 2x for every
    stop of under-exposure (the camera raised ISO), plus read noise of 1/10 of it."""
    shoulder_knee: tuple[float, float] = (0.4, 0.8)
    """``highlights``: range of the linear level where a soft roll-off replaces the hard clip at 1."""
    jpeg_quality: tuple[int, int] = (25, 85)
    """``jpeg``: range of the JPEG quality of one re-encoding (8-bit)."""
    p_tone: float = 0.0
    """Probability of a mild sRGB power curve ``x ** gamma`` after encoding (the v1 error model's tone change)."""
    tone_gamma: tuple[float, float] = (0.85, 1.15)
    """Range of that power."""
    quantize: bool = True
    """Round the result to 8 bits per channel (as a small camera's JPEG)."""

    def __post_init__(self) -> None:
        unknown = [f for f in (*self.families, *self.always) if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown degradation families {unknown}; valid: {', '.join(FAMILIES)}")

    @classmethod
    def v1(cls) -> DegradeConfig:
        """The single error model of releases <= 0.1 (never correct, smooth field always on, sRGB gamma tweak)."""
        return cls(p_correct=0.0, under_ev=(-2.5, -0.5), over_ev=(0.5, 1.5), p_under=0.7, families=("spatial",),
                   always=("spatial",), vignette_ev=(0.0, 0.0), local_max_ev=1.0, p_tone=0.5)

    @classmethod
    def only(cls, *families: str, **kw) -> DegradeConfig:
        """Global offset plus exactly ``families`` on in every copy (development sets of one family)."""
        return cls(families=tuple(families), always=tuple(families), **kw)

    @classmethod
    def without(cls, *families: str, **kw) -> DegradeConfig:
        """The default mix with ``families`` withheld (leave-family-out training)."""
        return cls(families=tuple(f for f in FAMILIES if f not in families), **kw)

    def to_dict(self) -> dict:
        """JSON-able dict of the fields (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> DegradeConfig:
        """Inverse of :meth:`to_dict`; ``{"preset": "v1", ...}`` starts from :meth:`v1`, ``{"withhold": [...]}``
        removes families from ``families`` (leave-family-out). Unknown keys raise ValueError."""
        d = dict(d)
        preset = d.pop("preset", None)
        withhold = d.pop("withhold", [])
        base = cls.v1() if preset == "v1" else cls() if preset in (None, "mix") else None
        if base is None:
            raise ValueError(f"unknown degradation preset {preset!r}; use mix or v1")
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown degradation settings {sorted(set(d) - known)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        cfg = dataclasses.replace(base, **kw)
        if withhold:
            cfg = dataclasses.replace(cfg, families=tuple(f for f in cfg.families if f not in withhold))
        return cfg


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates u (across, (1, W)) and v (down, (H, 1)) in (0, 1), float32."""
    h, w = shape
    u = (np.arange(w, dtype=np.float32) + 0.5) / w
    v = (np.arange(h, dtype=np.float32) + 0.5) / h
    return u[None, :], v[:, None]


def _local_field(sp: dict, shape: tuple[int, int]) -> np.ndarray:
    """The unscaled local EV field of ``spatial`` params: gradient + blobs + vignette -> float32 (H, W)."""
    u, v = _grid(shape)
    g = sp["gradient"]
    theta = math.radians(g["angle_deg"])
    # projection on the gradient direction, scaled to [-1, 1] over the frame
    d = (u - 0.5) * math.cos(theta) + (v - 0.5) * math.sin(theta)
    extent = 0.5 * (abs(math.cos(theta)) + abs(math.sin(theta)))
    local = np.broadcast_to(np.float32(g["ev"] / extent) * d, shape).astype(np.float32)
    for b in sp["blobs"]:
        local = local + np.float32(b["ev"]) * np.exp(-((u - b["cx"]) ** 2 + (v - b["cy"]) ** 2) / (2 * b["sigma"] ** 2))
    vig = float(sp.get("vignette_ev", 0.0))
    if vig:
        local = local - np.float32(vig) * ((u - 0.5) ** 2 + (v - 0.5) ** 2) / np.float32(0.5)
    return local.astype(np.float32)


def degradation_ev_map(params: dict, shape: tuple[int, int]) -> np.ndarray:
    """The EV map (global offset + ``spatial`` field) of a degradation's ``params`` for an (H, W) frame -> float32.

    The field is defined in normalised frame coordinates, so the same ``params`` give the same map (up to
    sampling) at any resolution; ``apply_ev(x, -map[..., None])`` undoes the exposure part where nothing clipped
    and no other family changed the tones.
    """
    g = np.float32(params["global_ev"])
    sp = params.get("spatial")
    if not sp:
        return np.full(shape, g, np.float32)
    local = _local_field(sp, shape) * np.float32(sp["local_scale"])
    bound = sp.get("local_max_ev")
    if bound is not None:  # the scale is fitted on a 64x64 grid; the clip catches the <2% excess of finer grids
        local = np.clip(local, -bound, bound)
    return (g + local).astype(np.float32)


def _draw_params(rng: np.random.Generator, config: DegradeConfig) -> dict:
    """Draw the random parameters of one degradation (JSON-able).

    Every parameter is drawn in a fixed order whether or not its family is on, so that switching families on or
    off (leave-family-out sets) keeps the other draws of a (seed, photo) the same.
    """
    kind = rng.random()
    side = rng.random() < config.p_under
    u_glob = rng.random()
    if kind < config.p_correct:
        global_ev = (2 * u_glob - 1) * config.correct_ev
    else:
        lo, hi = config.under_ev if side else config.over_ev
        global_ev = lo + u_glob * (hi - lo)
    on_draws = rng.random(len(FAMILIES))
    on = {f: (f in config.always) or (f in config.families and on_draws[i] < config.p_family)
          for i, f in enumerate(FAMILIES)}
    gradient = {"angle_deg": float(rng.uniform(0.0, 360.0)),
                "ev": float(rng.uniform(-config.gradient_ev, config.gradient_ev))}
    n_blobs = int(rng.integers(0, config.max_blobs + 1))
    blobs = [{"cx": float(rng.uniform(0, 1)), "cy": float(rng.uniform(0, 1)),
              "sigma": float(rng.uniform(*config.blob_sigma)),
              "ev": float(rng.uniform(-config.blob_ev, config.blob_ev))} for _ in range(config.max_blobs)][:n_blobs]
    vignette = float(rng.uniform(*config.vignette_ev))
    contrast = float(np.exp(rng.uniform(np.log(config.tone_contrast[0]), np.log(config.tone_contrast[1]))))
    wb = [float(g) for g in rng.normal(0.0, config.wb_sigma, 2)]
    noise = float(np.exp(rng.uniform(np.log(config.noise_level[0]), np.log(config.noise_level[1]))))
    noise_seed = int(rng.integers(0, 2**31 - 1))
    knee = float(rng.uniform(*config.shoulder_knee))
    curve = CAMERA_CURVES[int(rng.integers(len(CAMERA_CURVES)))]
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    tone_draw, gamma_draw = rng.random(), rng.uniform(*config.tone_gamma)
    params: dict = {
        "global_ev": float(global_ev),
        "families": [f for f in FAMILIES if on[f]],
        "spatial": None,
        "tone_contrast": contrast if on["tone"] else None,
        "wb_log2_gains": wb if on["white_balance"] else None,
        "noise": {"level": noise, "seed": noise_seed} if on["noise"] else None,
        "shoulder_knee": knee if on["highlights"] else None,
        "camera_curve": curve if on["camera_curve"] else None,
        "jpeg_quality": quality if on["jpeg"] else None,
        "tone_gamma": float(gamma_draw) if tone_draw < config.p_tone else None,
        "quantized": bool(config.quantize),
    }
    if on["spatial"]:
        sp = {"gradient": gradient, "blobs": blobs, "vignette_ev": vignette, "local_scale": 1.0,
              "local_max_ev": float(config.local_max_ev)}
        # bound the local field on a fixed 64x64 grid, so that the scale does not depend on the image resolution
        peak = float(np.abs(_local_field(sp, (64, 64))).max())
        if peak > config.local_max_ev:
            sp["local_scale"] = config.local_max_ev / peak
        params["spatial"] = sp
    return params


def degrade_field(
    shape: tuple[int, int], rng: np.random.Generator | int | None, config: DegradeConfig = DegradeConfig()
) -> tuple[np.ndarray, dict]:
    """Draw a degradation and render its EV map for an (H, W) frame -> (float32 (H, W) EV, params); see :func:`degrade`."""
    params = _draw_params(np.random.default_rng(rng), config)
    return degradation_ev_map(params, shape), params


_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _encode_curve(lin: np.ndarray, curve: str | None) -> np.ndarray:
    """Linear [0, 1] -> display values [0, 1] by the camera's curve: sRGB (None) or one of :data:`CAMERA_CURVES`.

    ``gamma22``: pure power 1/2.2 (darker shadows than sRGB); ``filmic``: an S-curve (sRGB then a smoothstep-like
    ``s + 0.7 s (1 - s) (2 s - 1)``); ``flat_log``: a log-like curve ``log2(1 + 15 x) / 4`` (lifted shadows).
    """
    x = np.clip(lin, 0.0, 1.0)
    if curve is None:
        return linear_to_srgb(x)
    if curve == "gamma22":
        return np.power(x, np.float32(1 / 2.2)).astype(np.float32)
    if curve == "filmic":
        s = linear_to_srgb(x)
        return (s + np.float32(0.7) * s * (1 - s) * (2 * s - 1)).astype(np.float32)
    if curve == "flat_log":
        return (np.log2(1 + 15 * x) / 4).astype(np.float32)
    raise ValueError(f"unknown camera curve {curve!r}")


def _shoulder(lin: np.ndarray, knee: float | None) -> np.ndarray:
    """Sensor/engine highlight handling: hard clip at 1 (``knee`` None) or a soft roll-off above ``knee``:
    ``k + (1-k) * t / (1 + t)`` with ``t = (x - k) / (1 - k)`` (slope 1 at the knee, approaches 1)."""
    if knee is None:
        return np.clip(lin, 0.0, 1.0)
    k = np.float32(knee)
    t = np.maximum(lin - k, 0) / (1 - k)
    return np.where(lin > k, k + (1 - k) * t / (1 + t), np.maximum(lin, 0)).astype(np.float32)


def degrade(
    srgb: np.ndarray, rng: np.random.Generator | int | None, *, config: DegradeConfig = DegradeConfig()
) -> tuple[np.ndarray, dict]:
    """Apply a random, documented exposure error to a well-exposed photo.

    Pipeline (linear light is ``srgb_to_linear(x)``; each family is on per copy, see :class:`DegradeConfig`):

    1. ``white_balance``: R and B multiplied by ``2**g`` (g normal, sd ``wb_sigma``), all three rescaled so that
       a neutral grey keeps its luminance.
    2. Exposure: linear light times ``2 ** map``, map = the global offset (about 0 with probability ``p_correct``,
       else uniform in ``under_ev`` / ``over_ev``) plus, with ``spatial``, a smooth local field (linear gradient,
       0..``max_blobs`` Gaussian blobs, radial vignette; magnitude <= ``local_max_ev``; resolution independent,
       :func:`degradation_ev_map`).
    3. ``tone``: log-luminance contrast ``c`` around 0.18 (``y = 0.18 * (x / 0.18) ** c`` per channel): an EV
       error that follows the scene's own luminance (c > 1: crushed shadows and blown highlights).
    4. ``noise``: Gaussian shot + read noise, variance ``level * 2**max(0, -global_ev) * (x + 0.1 * level)``:
       darker shots are noisier.
    5. Highlights: hard clip at 1, or with ``highlights`` a soft roll-off above a knee (camera JPEG engines).
    6. Encoding: sRGB, or with ``camera_curve`` another camera's tone curve (:data:`CAMERA_CURVES`); then the
       v1 sRGB power ``x ** tone_gamma`` with probability ``p_tone`` (0 by default).
    7. 8-bit quantisation (``quantize``), then with ``jpeg`` one JPEG re-encoding at a random quality.

    With no family on, steps 2 and 5 are undone by ``apply_ev(y, -map)`` wherever nothing clipped. ``srgb``:
    float (H, W, 3) in [0, 1] (not modified). ``rng``: a ``numpy.random.Generator`` or a seed; the result is a
    deterministic function of it. Returns (float32 (H, W, 3) sRGB in [0, 1], params): a JSON-able dict with
    ``global_ev``, ``families`` (those on), the parameters of each family (None when off), ``tone_gamma``,
    ``quantized``, the measured ``ev_min``/``ev_mean``/``ev_max`` of the EV map and ``clipped_fraction``
    (pixels the exposure pushed to clip: a channel >= 1 that was below 1 in every channel before).
    """
    x = np.asarray(srgb, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"degrade expects an (H, W, 3) image, got shape {x.shape}")
    ev, params = degrade_field(x.shape[:2], rng, config)
    lin0 = srgb_to_linear(x)
    lin = lin0
    if params["wb_log2_gains"] is not None:
        gains = np.exp2(np.array([params["wb_log2_gains"][0], 0.0, params["wb_log2_gains"][1]], np.float32))
        lin = lin * (gains / np.float32(gains @ _LUMA))
    lin = lin * np.exp2(ev)[..., None]
    pushed = np.any(lin >= 1.0, axis=2) & np.all(lin0 < 1.0, axis=2)
    params["clipped_fraction"] = float(np.mean(pushed))
    if params["tone_contrast"] is not None:
        lin = np.float32(0.18) * np.power(np.maximum(lin, 1e-6) / np.float32(0.18), np.float32(params["tone_contrast"]))
    if params["noise"] is not None:
        nrng = np.random.default_rng(params["noise"]["seed"])
        level = params["noise"]["level"] * 2.0 ** max(0.0, -params["global_ev"])
        var = np.float32(level) * (np.maximum(lin, 0) + np.float32(0.1 * params["noise"]["level"]))
        lin = lin + np.sqrt(var) * nrng.standard_normal(lin.shape, dtype=np.float32)
    lin = _shoulder(lin, params["shoulder_knee"])
    out = _encode_curve(lin, params["camera_curve"])
    if params["tone_gamma"] is not None:
        out = np.power(out, np.float32(params["tone_gamma"]))
    if config.quantize or params["jpeg_quality"] is not None:
        out = np.round(np.clip(out, 0.0, 1.0) * 255.0) / 255.0
    if params["jpeg_quality"] is not None:
        u8 = (out * 255.0).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, params["jpeg_quality"]])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
    params.update(ev_min=float(ev.min()), ev_mean=float(ev.mean()), ev_max=float(ev.max()))
    return np.clip(out, 0.0, 1.0).astype(np.float32), params


def _image_rng(seed: int, key: str | int, copy: int = 0) -> np.random.Generator:
    """Generator determined by (seed, key, copy); string keys are hashed with CRC-32 (stable across runs/platforms)."""
    k = key if isinstance(key, int) else zlib.crc32(key.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(k), int(copy)]))


def degraded_previews(
    previews: np.ndarray,
    *,
    seed: int,
    config: DegradeConfig = DegradeConfig(),
    copies: int = 1,
    return_params: bool = False,
    out_size: int | None = None,
) -> np.ndarray | tuple[np.ndarray, list[dict]]:
    """Degrade (N, s, s, 3) float32 sRGB previews directly at preview size (fast path for training inputs).

    Returns float32 (N * copies, s, s, 3) (and the params of each output when ``return_params``); output
    ``i * copies + c`` is copy ``c`` of preview ``i``, drawn from (seed, i, c). Because the EV field is defined in
    frame coordinates, degrading the preview differs from taking the preview of a degraded full-resolution photo
    only by the order of area resampling and the non-linear steps (clip, encode, tone curve, quantisation):
    mean absolute difference 0.002 (at most 0.011) over 20 BSDS500 photos (checked in tests/test_data.py).
    ``out_size``: area-resample each degraded preview to (out_size, out_size) (degrade a larger preview, e.g. 128,
    for a 64x64 training input, so that noise and JPEG blocks are averaged as in a real photo's preview).
    """
    p = np.asarray(previews, dtype=np.float32)
    if p.ndim != 4 or p.shape[3] != 3:
        raise ValueError(f"degraded_previews expects (N, s, s, 3) previews, got shape {p.shape}")
    side = out_size or p.shape[1]
    out = np.empty((p.shape[0] * copies, side, side, 3), dtype=np.float32)
    params: list[dict] = []
    for i in range(p.shape[0]):
        for c in range(copies):
            y, prm = degrade(p[i], _image_rng(seed, i, c), config=config)
            out[i * copies + c] = y if out_size is None else make_preview(y, side)
            params.append(prm)
    return (out, params) if return_params else out


# --------------------------------------------------------------------------------------------------------------
# Previews
# --------------------------------------------------------------------------------------------------------------


def _cache_key(paths: Sequence[Path], size: int) -> str:
    """Hash of (resolved path, mtime, byte size) of every file and the preview size."""
    h = hashlib.sha256(f"previews-v1:{size}".encode())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"\0{p.resolve()}\0{st.st_mtime_ns}\0{st.st_size}".encode())
        except OSError:
            h.update(f"\0{p}\0missing".encode())
    return h.hexdigest()[:20]


def load_previews(
    paths: Iterable[str | os.PathLike],
    *,
    size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, list[Path]]:
    """Read photos and reduce each to a (size, size, 3) preview (area resampling, aspect ratio not kept).

    ``paths``: photo files and/or folders (folders are searched recursively for supported photos). Returns
    (float32 (N, size, size, 3) sRGB in [0, 1], the N paths kept, in order). A file that cannot be read is
    reported with one warning line and skipped; no usable photo raises :class:`DataError`. With ``cache_dir`` the
    stack is stored as ``previews-<size>-<hash>.npz`` keyed by the resolved paths, their mtimes and byte sizes,
    and ``size``, so a re-run over unchanged files reads it back instead of decoding.
    """
    try:
        files = iter_photo_paths([Path(p) for p in paths], recursive=True)
    except PhotoError as exc:
        raise DataError(str(exc)) from None
    if not files:
        raise DataError("no photos given")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"previews-{size}-{_cache_key(files, size)}.npz"
        if cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    return z["previews"].astype(np.float32, copy=False), [Path(s) for s in z["paths"]]
            except (OSError, KeyError, ValueError) as exc:
                log.warning("ignoring unreadable preview cache %s (%s)", cache, exc)
    stack: list[np.ndarray] = []
    kept: list[Path] = []
    for p in tqdm(files, desc="previews", unit="photo", disable=not progress, leave=False):
        try:
            px = read_photo(p).pixels
        except PhotoError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
            continue
        stack.append(make_preview(px, size))
        kept.append(p)
    if not stack:
        raise DataError(f"none of the {len(files)} photos could be read")
    previews = np.stack(stack).astype(np.float32)
    if cache is not None:
        try:
            atomic_write(cache, lambda fh: np.savez(fh, previews=previews, paths=np.array([str(p) for p in kept])))
        except OSError as exc:
            log.warning("cannot write preview cache %s (%s)", cache, exc)
    return previews, kept


# --------------------------------------------------------------------------------------------------------------
# Paired folders
# --------------------------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    """One input photo and its target (expert-retouched or clean) photo, matched by file stem or FiveK id."""

    stem: str
    input_path: Path
    target_path: Path


def _photos_by_stem(folder: Path) -> dict[str, Path]:
    """Supported photo files of a folder by stem; the same stem with two suffixes is a layout error."""
    out: dict[str, Path] = {}
    for p in iter_photo_paths([folder]):
        if p.stem in out:
            raise DataError(f"{folder}: two photos named {p.stem} ({out[p.stem].name}, {p.name})")
        out[p.stem] = p
    return out


def _report_missing(what: str, names: Sequence[str]) -> None:
    if names:
        shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
        warnings.warn(f"{len(names)} {what} skipped: {shown}", stacklevel=3)


def paired_folder(root: str | os.PathLike) -> list[Pair]:
    """Pairs from ``root/input`` and ``root/target``, matched by file stem (any supported suffix), sorted by stem.

    Stems found on one side only are reported (one warning per side) and skipped; a missing folder, the same stem
    twice in one folder, or no pair at all raise :class:`DataError`.
    """
    root = Path(root)
    for name in ("input", "target"):
        if not (root / name).is_dir():
            raise DataError(f"{root}: no '{name}' folder (expected {root}/input and {root}/target)")
    inputs, targets = _photos_by_stem(root / "input"), _photos_by_stem(root / "target")
    _report_missing("inputs without a target", sorted(set(inputs) - set(targets)))
    _report_missing("targets without an input", sorted(set(targets) - set(inputs)))
    pairs = [Pair(s, inputs[s], targets[s]) for s in sorted(set(inputs) & set(targets))]
    if not pairs:
        raise DataError(f"{root}: no input/target pair with matching file names")
    return pairs


#: Largest relative difference between the aspect ratios (width / height, upright) of a training pair's input and
#: target: both are squashed alike to a square preview, so a crop or a rotation would pair different content.
PAIR_ASPECT_TOLERANCE = 0.01


def _aspect_mismatch(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Relative difference of the aspect ratios of two (H, W, ...) shapes: 0 for the same, 0.01 for 1%."""
    r = (a[1] / a[0]) / (b[1] / b[0])
    return max(r, 1.0 / r) - 1.0


def load_pair_previews(
    pairs: Sequence[Pair],
    *,
    size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Pair]]:
    """Previews of every pair's input and target (read_photo + make_preview, as :func:`load_previews`), in order.

    Returns (float32 (N, size, size, 3) sRGB [0, 1] input previews, the target previews alike, the N pairs kept).
    A pair with an unreadable side, or whose input and target aspect ratios differ by more than
    :data:`PAIR_ASPECT_TOLERANCE` (a rotated target), is reported with one warning line naming it and skipped, also
    when the result comes from the cache; the lines are appended to ``notes`` when given. No usable pair raises
    :class:`DataError`. With ``cache_dir`` the result is stored as ``pairs-<size>-<hash>.npz``, keyed by the
    resolved paths, mtimes and byte sizes of both files of every pair, and ``size``.
    """
    pairs = list(pairs)
    if not pairs:
        raise DataError("no pairs given")
    cache = None
    if cache_dir is not None:
        files = [f for p in pairs for f in (p.input_path, p.target_path)]
        cache = Path(cache_dir) / f"pairs-{size}-{_cache_key(files, size)}.npz"
        if cache.is_file():
            got = None
            try:
                with np.load(cache, allow_pickle=False) as z:
                    if "skipped" in z.files:  # a cache of an earlier release does not say what it skipped: rebuilt
                        got = (z["inputs"].astype(np.float32, copy=False),
                               z["targets"].astype(np.float32, copy=False), [pairs[int(i)] for i in z["kept"]])
                        skipped = [str(m) for m in z["skipped"]]
            except (OSError, KeyError, ValueError, IndexError) as exc:
                log.warning("ignoring unreadable pair preview cache %s (%s)", cache, exc)
            if got is not None:
                for msg in skipped:  # said again on every run, as when the cache was built
                    warnings.warn(msg, stacklevel=2)
                if notes is not None:
                    notes.extend(skipped)
                return got
    ins: list[np.ndarray] = []
    tgs: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[str] = []
    for k, p in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress, leave=False)):
        try:
            a, b = read_photo(p.input_path).pixels, read_photo(p.target_path).pixels
        except PhotoError as exc:
            skipped.append(f"pair {p.stem} skipped: {exc}")
            warnings.warn(skipped[-1], stacklevel=2)
            continue
        off = _aspect_mismatch(a.shape, b.shape)
        if off > PAIR_ASPECT_TOLERANCE:
            turned = " (the target is rotated)" if a.shape[:2] == b.shape[1::-1] else ""
            skipped.append(f"pair {p.stem} skipped: input {p.input_path} ({a.shape[1]}x{a.shape[0]}) and target "
                           f"{p.target_path} ({b.shape[1]}x{b.shape[0]}) differ in aspect ratio by {off:.1%} "
                           f"(more than {PAIR_ASPECT_TOLERANCE:.0%}){turned}")
            warnings.warn(skipped[-1], stacklevel=2)
            continue
        ins.append(make_preview(a, size))
        tgs.append(make_preview(b, size))
        kept.append(k)
    if not kept:
        raise DataError(f"none of the {len(pairs)} pairs is usable (unreadable or different aspect ratios)")
    x, y = np.stack(ins).astype(np.float32), np.stack(tgs).astype(np.float32)
    if cache is not None:
        try:
            atomic_write(cache, lambda fh: np.savez(fh, inputs=x, targets=y, kept=np.array(kept, np.int64),
                                                     skipped=np.array(skipped, dtype=str)))
        except OSError as exc:
            log.warning("cannot write pair preview cache %s (%s)", cache, exc)
    if notes is not None:
        notes.extend(skipped)
    return x, y, [pairs[k] for k in kept]


# --------------------------------------------------------------------------------------------------------------
# MIT-Adobe FiveK
# --------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------
# Development pairs
# --------------------------------------------------------------------------------------------------------------



def make_dev_pairs(
    sources: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    long_edge: int = 512,
    config: DegradeConfig = DegradeConfig(),
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[Pair]:
    """Make synthetic development pairs from well-exposed photos (files and/or folders, first ``limit`` kept).

    Each photo is downscaled (area) to ``long_edge`` (never upscaled) and rounded to 8 bits: that is the target,
    written as ``out_dir/target/<stem>.png``; :func:`degrade` of the target, drawn from (seed, stem), is written
    as ``out_dir/input/<stem>.png``. ``out_dir/degradations.json`` records the seed, the config and, per stem,
    the source, the size and the degradation params. The same (seed, sources) give byte-identical files.
    Unreadable sources are skipped with a warning (listed under ``skipped`` in the JSON). The set is built in a
    hidden folder beside ``out_dir`` and moved into place at the end, so a failed run leaves nothing behind.
    Raises :class:`DataError` for a non-empty ``out_dir`` without ``overwrite`` (with it, files are replaced and
    others left), duplicate stems or no readable source.
    """
    sources = [Path(s) for s in sources]
    try:
        paths = iter_photo_paths(sources)
    except PhotoError as exc:
        raise DataError(str(exc)) from None
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise DataError(f"no source photos found in {', '.join(map(str, sources))}" if sources else
                        "no source photos given")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise DataError(f"two sources named {p.stem}: {stems[p.stem]} and {p}")
        stems[p.stem] = p
    if not os.fspath(out_dir).strip():
        raise DataError("-o is empty: give the output folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder not empty (pass --overwrite to write into it)")
    record: dict = {"version": 1, "generator": "deepexposure.data.make_dev_pairs", "seed": int(seed),
                    "long_edge": int(long_edge), "config": config.to_dict(), "images": {}}
    # built in a hidden staging folder beside OUT, moved into place at the end: a failed or killed run leaves no
    # partial set (a killed run's staging folder is removed as stale by a later run, deepexposure.atomic)
    merge = out.is_dir() and any(out.iterdir())  # only with overwrite: files are replaced, others left
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent)
    stage = temp_path(out)
    stage.mkdir()
    pairs, skipped = [], {}
    try:
        for stem, src in tqdm(stems.items(), desc="make-pairs", unit="photo", disable=not progress):
            try:
                px = read_photo(src).pixels
            except PhotoError as exc:
                log.warning("skipped: %s", exc)
                skipped[stem] = str(exc)
                continue
            target = (np.round(reduce_long_edge(px, long_edge) * 255.0) / 255.0).astype(np.float32)
            degraded, params = degrade(target, _image_rng(seed, stem), config=config)
            write_photo(stage / "target" / f"{stem}.png", target, bit_depth=8)
            write_photo(stage / "input" / f"{stem}.png", degraded, bit_depth=8)
            record["images"][stem] = {"source": str(src), "width": int(target.shape[1]),
                                      "height": int(target.shape[0]), "params": params}
            pairs.append(Pair(stem, out / "input" / f"{stem}.png", out / "target" / f"{stem}.png"))
        if not pairs:
            raise DataError(f"none of the {len(stems)} source photos could be read")
        if skipped:
            record["skipped"] = skipped
            log.warning("%d of %d source photos skipped (unreadable)", len(skipped), len(stems))
        atomic_write_text(stage / "degradations.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
        if merge:
            for sub in ("target", "input"):
                (out / sub).mkdir(exist_ok=True)
                for f in sorted((stage / sub).iterdir()):
                    os.replace(f, out / sub / f.name)
            os.replace(stage / "degradations.json", out / "degradations.json")
            shutil.rmtree(stage)
        else:
            if out.is_dir():
                out.rmdir()  # empty
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return pairs


# --------------------------------------------------------------------------------------------------------------
# SICE frame selection
# --------------------------------------------------------------------------------------------------------------

#: Mean grey level (fraction of white) at or below which a SICE frame counts as under-exposed (50/255;
#: the BSDS500 train 5th percentile is 0.23).
SICE_DARK_MAX = 0.2
#: Mean grey level (fraction of white) at or above which a SICE frame counts as over-exposed (170/255;
#: above 98% of BSDS500 train photos).
SICE_BRIGHT_MIN = 0.667


def _mean_grey(path: Path) -> float:
    """Mean of the RGB values (fraction of white) of a 32x32 box-filtered thumbnail.

    Pillow's JPEG draft mode decodes at 1/8 scale (DCT scaling), ~10x faster than a full decode; the mean is the
    same to about 0.002.
    """
    with Image.open(path) as im:
        im.draft("RGB", (64, 64))
        thumb = im.convert("RGB").resize((32, 32), Image.Resampling.BOX)
        return float(np.asarray(thumb, np.float32).mean()) / 255.0


def _sice_folder(root: str | os.PathLike) -> Path:
    """The folder of SICE frames: ``root/images`` when present, else ``root``; DataError when missing."""
    root = Path(root)
    folder = root / "images" if (root / "images").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{root}: no such folder")
    return folder


def _frame_grey(path: Path) -> float | None:
    """:func:`_mean_grey` of a frame, or None (with a warning) when it cannot be read."""
    try:
        return _mean_grey(path)
    except (OSError, ValueError, SyntaxError) as exc:
        warnings.warn(f"skipped: {path}: unreadable ({exc})", stacklevel=3)
        return None


def select_sice(
    root: str | os.PathLike, *, dark_max: float = SICE_DARK_MAX, bright_min: float = SICE_BRIGHT_MIN
) -> list[Path]:
    """Clearly under- or over-exposed frames of the SICE / Zero-DCE++ brackets, sorted by path.

    ``root``: the ``sice_zerodcepp`` folder (its ``images/`` sub-folder is used when present) or a folder of
    frames. A frame is kept when the mean grey level of its thumbnail (fraction of white, [0, 1]) is
    <= ``dark_max`` or >= ``bright_min``. On the shared 2,002 frames the defaults keep 541 dark + 442 bright = 983
    (docs/data.md). Unreadable frames are reported (warning) and skipped; none selected raises :class:`DataError`.
    """
    folder = _sice_folder(root)
    out = []
    for p in iter_photo_paths([folder]):
        g = _frame_grey(p)
        if g is not None and (g <= dark_max or g >= bright_min):
            out.append(p)
    if not out:
        raise DataError(f"{folder}: no frame with mean grey <= {dark_max} or >= {bright_min}")
    return out


#: Mean grey level a SICE reference frame should have (fraction of white; BSDS500 train median is about 0.43).
SICE_REFERENCE_GREY = 0.45
#: Mean grey band a SICE reference frame must lie in (else its run gives none).
SICE_REFERENCE_BAND = (0.3, 0.6)


def select_sice_references(
    root: str | os.PathLike, *, runs_csv: str | os.PathLike | None = None, min_frames: int = 3,
    grey: float = SICE_REFERENCE_GREY, band: tuple[float, float] = SICE_REFERENCE_BAND,
) -> list[Path]:
    """One well-exposed frame per bracket of the SICE / Zero-DCE++ set: more clean photos for synthetic inputs.

    SICE has no reference images, but each bracket (a run of consecutive file numbers, ``first..last`` in
    ``runs_csv``, default ``root/sequences_guess.csv``) spans under- to over-exposure of one static scene, so its
    frame whose mean grey level (thumbnail, fraction of white) is closest to ``grey`` is a plausible well-exposed
    photo. Runs shorter than ``min_frames`` and runs whose best frame lies outside ``band`` give none. Our choice
    (not in the paper); on the shared set it picks 239 of 272 runs (docs/data.md). Frames are named ``<n>.jpg``
    (any supported suffix). Returns paths sorted by frame number; a missing folder or runs file, or no frame
    selected, raises :class:`DataError`.
    """
    import csv

    folder = _sice_folder(root)
    runs_path = Path(runs_csv) if runs_csv is not None else Path(root) / "sequences_guess.csv"
    if not runs_path.is_file():
        raise DataError(f"{runs_path}: no runs file (CSV with columns first,last giving each bracket's frame numbers)")
    by_number = {int(p.stem): p for p in iter_photo_paths([folder]) if p.stem.isdigit()}
    with open(runs_path, newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    out = []
    for row in rows:
        try:
            first, last = int(row["first"]), int(row["last"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{runs_path}: expected integer columns 'first' and 'last'") from None
        frames = [by_number[n] for n in range(first, last + 1) if n in by_number]
        if len(frames) < min_frames:
            continue
        greys = [(g, f) for f in frames if (g := _frame_grey(f)) is not None]
        if not greys:
            continue
        g, best = min(greys, key=lambda s: abs(s[0] - grey))
        if band[0] <= g <= band[1]:
            out.append(best)
    if not out:
        raise DataError(f"{folder}: no bracket has a frame with mean grey in {band}")
    return sorted(out, key=lambda p: int(p.stem))
