"""Atomic checkpoints: models, optimisers, schedulers, step, RNG states, OU state and the config.

Everything is stored as tensors, numbers, strings, lists and dicts, so a checkpoint loads with
``torch.load(..., weights_only=True)``. Writes are atomic (:mod:`deepexposure.atomic`: never a half-written file, no temporary left behind).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from deepexposure.atomic import atomic_write
from deepexposure.errors import ModelError

__all__ = ["save_checkpoint", "load_checkpoint", "rng_states", "set_rng_states", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


def rng_states() -> dict:
    """Global RNG states of torch, numpy and python as weights_only-safe objects."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": [py[0], list(py[1]), py[2]]}


def set_rng_states(d: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(d["torch"])
    n = d["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = d["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Atomically write ``payload`` (weights_only-safe dict) to ``path``."""
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint; a missing or unreadable file raises :class:`ModelError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's message is many lines (and suggests unsafe loading)
        raise ModelError(f"cannot read checkpoint {path}: not a deepexposure checkpoint, or a truncated or corrupt "
                         f"one ({type(exc).__name__}); resume from another copy or start a new run") from None
