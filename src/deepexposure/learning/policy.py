"""A trained actor packaged for inference, loadable without the training code.

File format (``torch.save`` of a plain dict, loaded with ``weights_only=True``)::

    {"format": "deepexposure-policy", "version": 1,
     "arch": {"width", "hidden", "size", "max_ev", "in_channels"[, "global_features", "global_branch", "residual_ev"]},  # Actor arguments
     "state_dict": {name: tensor},                                     # Actor weights
     "config": {"variant", "segments", "max_ev", "segmentation": {...}, ...}}

``predict`` runs the deterministic episode (no exploration noise) over ``config["segments"]`` steps at 64x64 and
returns one EV (stops) per segment of the given labels. Inference without torch uses the ONNX export of this
file (:mod:`deepexposure.inference.onnx_policy`, ``deepexposure export-onnx``), which keeps the same ``model_id``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from deepexposure.atomic import atomic_write
from deepexposure.errors import ModelError
from deepexposure.inference.onnx_policy import ARCH_KEYS, POLICY_FORMAT, PolicyBase, config_problem
from deepexposure.learning.env import masks_tensor, run_episode
from deepexposure.learning.models import Actor

__all__ = ["Policy", "select_device", "POLICY_FORMAT"]


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU.

    An unknown device name, or a device this torch build or machine lacks, raises :class:`ModelError`.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ModelError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r}: CUDA is not available (no GPU, or torch built without CUDA); "
                             "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ModelError(f"device {device!r}: Apple MPS is not available; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ModelError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


class Policy(PolicyBase):
    """Deterministic exposure policy. ``arch``: Actor constructor kwargs; ``config``: training facts (JSON-able)."""

    def __init__(self, actor: Actor, arch: dict, config: dict, *, device: str | torch.device | None = None) -> None:
        self.device = select_device(device)
        self.actor = actor.to(self.device).eval()
        self.arch = dict(arch)
        self.config = dict(config)
        self.segments = int(self.config.get("segments", 6))

    @classmethod
    def from_actor(cls, actor: Actor, arch: dict, config: dict, *, device=None) -> Policy:
        """Copy an actor (e.g. from training) into a standalone policy."""
        clone = Actor(**arch)
        clone.load_state_dict({k: v.detach().cpu().clone() for k, v in actor.state_dict().items()})
        return cls(clone, arch, config, device=device)

    @property
    def model_id(self) -> str:
        """``de-`` + first 12 hex digits of the SHA-256 of the weights (sorted by name, float32 bytes)."""
        h = hashlib.sha256()
        for k, v in sorted(self.actor.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
        return "de-" + h.hexdigest()[:12]

    def to_dict(self) -> dict:
        return {"format": POLICY_FORMAT, "version": 1, "arch": dict(self.arch),
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.actor.state_dict().items()},
                "config": dict(self.config)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the policy atomically (temp file + rename); returns the path."""
        state = self.to_dict()
        return atomic_write(path, lambda fh: torch.save(state, fh))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device | None = None) -> Policy:
        """Load a ``policy.pt``; a missing, corrupt or foreign file raises :class:`ModelError`."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"policy file not found: {path}")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise ModelError(f"cannot read policy file {path}: not a torch policy file, or a truncated one "
                             f"({type(exc).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != POLICY_FORMAT:
            raise ModelError(f"{path} is not a deepexposure policy file")
        try:
            arch = {k: d["arch"][k] for k in ARCH_KEYS if k in d["arch"]}
            with torch.device("meta"):  # shapes only, nothing allocated: a stored width of 10**9 fails here
                want = {k: tuple(v.shape) for k, v in Actor(**arch).state_dict().items()}
            got = {k: tuple(v.shape) for k, v in d["state_dict"].items()}
            if want != got:
                wrong = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got[k])
                raise ValueError(f"the stored arch {arch} and weights differ ({', '.join(wrong[:3])})")
            actor = Actor(**arch)
            actor.load_state_dict(d["state_dict"])
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"policy file {path} does not match the actor architecture: {exc}") from None
        config = d.get("config", {})
        problem = config_problem(config)
        if problem:
            raise ModelError(f"policy file {path} has a bad config: {problem}")
        return cls(actor, arch, config, device=device)

    @torch.no_grad()
    def predict_batch(self, previews: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """EVs ``(B, T)`` float32 for previews ``(B,64,64,3)`` float32 sRGB [0,1] and labels ``(B,64,64)`` int."""
        s0 = torch.from_numpy(np.ascontiguousarray(previews, dtype=np.float32)).permute(0, 3, 1, 2).to(self.device)
        lab = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        evs, _ = run_episode(self.actor, s0.clamp(0, 1), masks_tensor(lab, self.segments))
        return evs.cpu().numpy().astype(np.float32)
