"""A policy exported to ONNX, run by ONNX Runtime: inference without torch.

File format (written by ``deepexposure export-onnx``, :mod:`deepexposure.learning.export`): an ONNX model of the actor
with inputs ``state`` ``(B,8,S,S)`` float32 (the episode state of :func:`deepexposure.inference.episode.state`) and, for
``global_branch`` actors, ``exposure_features`` ``(B,51)`` float32 (:func:`deepexposure.inference.episode.exposure_features`
of the original preview, computed here in numpy once per episode), output ``ev`` ``(B,)`` (stops, within
+-max_ev), and the policy's facts in ``metadata_props``, so that the ``.onnx`` file alone is a complete model::

    format   = "deepexposure-policy"     version = "1"
    model_id = "de-<12 hex>"             the id of the policy.pt it was exported from (recipes name it)
    arch     = JSON of the Actor arguments (width, hidden, size, max_ev, in_channels, global_*, residual_ev)
    config   = JSON of the training facts (segments, max_ev, segmentation, variant, ...)
    source_sha256 = SHA-256 (hex) of the policy.pt file it was exported from (optional; exports since the
                    editor release): a run folder whose policy.pt differs gets a warning

The sequential episode (one actor call per segment) runs in numpy between session calls, exactly as
:func:`deepexposure.learning.env.run_episode` does in torch. This module imports no torch; ``onnxruntime`` is imported
when a model is loaded.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from deepexposure.errors import ModelError
from deepexposure.inference import episode

__all__ = ["OnnxPolicy", "PolicyBase", "POLICY_FORMAT", "ARCH_KEYS", "MAX_POLICY_SEGMENTS", "config_problem",
           "select_providers", "policy_segmentation", "file_sha256"]

POLICY_FORMAT = "deepexposure-policy"
#: The Actor constructor arguments a policy file stores (``arch``).
ARCH_KEYS = ("width", "hidden", "size", "max_ev", "in_channels", "global_features", "global_branch", "residual_ev")
_MODEL_ID = re.compile(r"de-[0-9a-f]{12}")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


class PolicyBase:
    """What :class:`OnnxPolicy` and the torch :class:`deepexposure.learning.policy.Policy` share: ``config``, ``arch``,
    ``segments``, ``model_id`` and :meth:`predict` on top of the subclass's :meth:`predict_batch`."""

    arch: dict
    config: dict
    segments: int

    @property
    def model_id(self) -> str:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def predict_batch(self, previews: np.ndarray, labels: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predict(self, preview: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """EVs ``(n,)`` float32 (stops, within +-max_ev), one per segment 0..n-1 of ``labels`` (64,64) int32."""
        preview = np.asarray(preview, dtype=np.float32)
        labels = np.asarray(labels)
        if preview.ndim != 3 or preview.shape[2] != 3 or preview.shape[:2] != labels.shape:
            raise ValueError(f"expected a (h,w,3) preview and (h,w) labels, got {preview.shape} and {labels.shape}")
        n = int(labels.max()) + 1
        if n > self.segments:
            raise ValueError(f"{n} segments but the policy was trained with at most {self.segments}")
        return self.predict_batch(preview[None], labels[None])[0, :n]


def select_providers(device: str | None = None) -> list:
    """ONNX Runtime execution providers for a ``--device``: None = CUDA first when this onnxruntime has it (the
    ``onnxruntime-gpu`` package), then CPU; ``cpu``; ``cuda`` / ``cuda:N``. Anything else, or CUDA where
    onnxruntime has no CUDA provider, raises :class:`ModelError`."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device is None:
        return ([_CUDA] if _CUDA in available else []) + [_CPU]
    name = str(device).strip().lower()
    if name == "cpu":
        return [_CPU]
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m:
        if _CUDA not in available:
            raise ModelError(f"device {device!r}: this onnxruntime has no CUDA provider (install onnxruntime-gpu "
                             "and CUDA, or use --device cpu)")
        return [(_CUDA, {"device_id": int(m.group(1) or 0)}), _CPU]
    if name.startswith("mps"):
        raise ModelError(f"device {device!r}: ONNX models run on cpu or cuda (mps is for .pt policies, with torch)")
    raise ModelError(f"unknown device {device!r}; use cpu, cuda or cuda:N")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


#: Most segments (episode steps) a policy file may declare: inference allocates masks and EVs per segment before
#: the first step (``segments = 10**9`` in a file's metadata once asked for 8 GB). Training allows at most 16.
MAX_POLICY_SEGMENTS = 256
#: Upper bounds of the segmentation parameters a policy file may store (``sigma``: the smoothing kernel grows
#: with it; ``min_size``: preview pixels).
_SEGMENTATION_MAX = {"max_segments": MAX_POLICY_SEGMENTS, "min_size": 1 << 24, "scale": 1e9, "sigma": 100.0}


def config_problem(config) -> str | None:
    """What is wrong with a policy's ``config`` (types and ranges of the keys inference uses), or None."""
    if not isinstance(config, dict):
        return f"expected an object, got {type(config).__name__}"
    if "segments" in config and not (_is_int(config["segments"]) and 1 <= config["segments"] <= MAX_POLICY_SEGMENTS):
        return f"segments must be an integer from 1 to {MAX_POLICY_SEGMENTS}, got {config['segments']!r}"
    if "max_ev" in config and not (_is_number(config["max_ev"]) and np.isfinite(config["max_ev"])):
        return f"max_ev must be a number, got {config['max_ev']!r}"
    seg = config.get("segmentation", {})
    if not isinstance(seg, dict):
        return f"segmentation must be an object, got {seg!r}"
    for key, check, what in (("max_segments", _is_int, "an integer"), ("min_size", _is_int, "an integer"),
                             ("scale", _is_number, "a number"), ("sigma", _is_number, "a number")):
        if key in seg and not (check(seg[key]) and 0 <= seg[key] <= _SEGMENTATION_MAX[key]):
            return f"segmentation {key} must be {what} from 0 to {_SEGMENTATION_MAX[key]:g}, got {seg[key]!r}"
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes (a policy.pt: which file an ONNX export came from)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def policy_segmentation(policy: PolicyBase) -> dict:
    """The :func:`~deepexposure.image.segmentation.segment` parameters a policy was trained with (its stored config;
    ``SEGMENT_DEFAULTS`` for keys an older file lacks, at most its T segments)."""
    from deepexposure.image.segmentation import segmentation_params

    stored = dict(policy.config.get("segmentation") or {})
    stored.setdefault("max_segments", policy.segments)
    return segmentation_params(stored)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _metadata(path: Path, meta: dict[str, str]) -> tuple[dict, dict, str]:
    """(arch, config, model_id) from an ONNX model's metadata_props; a foreign or bad one raises ModelError."""
    if meta.get("format") != POLICY_FORMAT:
        raise ModelError(f"{path} is an ONNX model but not a deepexposure policy (no deepexposure metadata; "
                         "make one with deepexposure export-onnx)")
    if meta.get("version") != "1":
        raise ModelError(f"{path}: unsupported deepexposure policy version {meta.get('version')!r} (this release "
                         "reads version 1)")
    try:
        arch, config = json.loads(meta["arch"]), json.loads(meta["config"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: bad deepexposure metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(arch, dict) or not all(_is_int(arch.get(k)) and arch[k] >= 1 for k in ("size", "in_channels")):
        raise ModelError(f"{path}: bad deepexposure metadata: arch must give positive integers size and in_channels")
    if "max_ev" in arch and not (_is_number(arch["max_ev"]) and 0 < arch["max_ev"] < float("inf")):
        raise ModelError(f"{path}: bad deepexposure metadata: arch max_ev must be a positive number, got "
                         f"{arch['max_ev']!r}")
    problem = config_problem(config)
    if problem:
        raise ModelError(f"policy file {path} has a bad config: {problem}")
    model_id = meta.get("model_id", "")
    if not _MODEL_ID.fullmatch(model_id):
        raise ModelError(f"{path}: bad deepexposure metadata: model_id {model_id!r} is not de-<12 hex digits>")
    return arch, config, model_id


class OnnxPolicy(PolicyBase):
    """Deterministic exposure policy run by ONNX Runtime; load with :meth:`load`."""

    def __init__(self, session, *, arch: dict, config: dict, model_id: str, path: Path | None = None,
                 source_sha256: str | None = None) -> None:
        self.session = session
        #: SHA-256 of the policy.pt this model was exported from (None: not recorded).
        self.source_sha256 = source_sha256
        self.arch = dict(arch)
        self.config = dict(config)
        self.segments = int(self.config.get("segments", 6))
        #: Largest |EV| (stops) the actor can return (``max_ev * tanh``, Actor's default 3); beyond: a broken model.
        self.max_ev = float(self.arch.get("max_ev", 3.0))
        self.path = path
        self._model_id = model_id
        names = {i.name for i in session.get_inputs()}
        self.uses_features = "exposure_features" in names

    @property
    def model_id(self) -> str:
        """The id of the ``policy.pt`` this model was exported from (stored in its metadata)."""
        return self._model_id

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime execution providers in use, first = preferred."""
        return list(self.session.get_providers())

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> OnnxPolicy:
        """Load a policy ``.onnx``; a missing, corrupt or foreign file raises :class:`ModelError`. ``device``: see
        :func:`select_providers`."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"policy file not found: {path}")
        providers = select_providers(device)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: no provider fallback chatter on stderr
        opts.intra_op_num_threads = 1  # a 64x64 actor: one thread is fastest, and -j N processes don't compete
        opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - any failure to parse or initialise: a bad file, or the device
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            if providers != [_CPU]:  # the file may be fine and the CUDA device not
                try:
                    ort.InferenceSession(os.fspath(path), sess_options=opts, providers=[_CPU])
                except Exception:  # noqa: BLE001, S110 - the file is bad: reported below
                    pass
                else:
                    raise ModelError(f"device {device!r}: ONNX Runtime cannot use it ({msg or type(exc).__name__}); "
                                     "use --device cpu") from None
            raise ModelError(f"cannot read ONNX model {path}: {type(exc).__name__}{': ' + msg if msg else ''}") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        arch, config, model_id = _metadata(path, meta)
        source = meta.get("source_sha256", "")
        source = source if _SHA256.fullmatch(source) else None
        size, channels = arch["size"], arch["in_channels"]
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        want = {"state"} | ({"exposure_features"} if arch.get("global_branch") else set())
        if set(inputs) != want or "ev" not in outputs:
            raise ModelError(f"{path}: the graph's inputs {sorted(inputs)} / outputs {sorted(outputs)} are not a "
                             f"deepexposure actor's ({sorted(want)} -> ev)")
        if list(inputs["state"].shape)[1:] != [channels, size, size]:
            raise ModelError(f"{path}: the graph's state input {inputs['state'].shape} does not match the stored "
                             f"arch ({channels} channels, {size}x{size})")
        return cls(session, arch=arch, config=config, model_id=model_id, path=path, source_sha256=source)

    def predict_batch(self, previews: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """EVs ``(B, T)`` float32 for previews ``(B,S,S,3)`` float32 sRGB [0,1] and labels ``(B,S,S)`` int."""
        s0 = np.ascontiguousarray(np.clip(np.asarray(previews, dtype=np.float32), 0.0, 1.0).transpose(0, 3, 1, 2))
        b, n_steps = s0.shape[0], self.segments
        masks = episode.hard_masks(labels, n_steps)
        feed: dict[str, np.ndarray] = {}
        if self.uses_features:
            feed["exposure_features"] = episode.exposure_features(s0.transpose(0, 2, 3, 1))
        cur = s0
        evs = np.empty((b, n_steps), np.float32)
        for t in range(n_steps):
            m = masks[:, t : t + 1]
            feed["state"] = episode.state(s0, m, cur, t, n_steps)
            try:
                out = self.session.run(["ev"], feed)[0]
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types: a graph that cannot run
                raise ModelError(f"{self.path}: ONNX Runtime failed to run the model: {type(exc).__name__}: "
                                 f"{str(exc).strip()[:200]}") from None
            e = np.asarray(out, dtype=np.float32).reshape(-1)
            if e.shape != (b,):
                raise ModelError(f"{self.path}: the model returned {e.size} EVs for {b} states")
            if not np.all(np.abs(e) <= self.max_ev * (1 + 1e-5) + 1e-6):  # NaN fails too
                bad = float(e[~(np.abs(e) <= self.max_ev * (1 + 1e-5) + 1e-6)][0])
                raise ModelError(f"{self.path}: the model returned the EV {bad:g}, outside the +-{self.max_ev:g} "
                                 "stops of its metadata (not a working deepexposure actor)")
            cur = episode.step(s0, cur, m, e)
            evs[:, t] = e
        return evs
