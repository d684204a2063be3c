"""The simplest learned exposure method, as a baseline for every learned policy: one global EV per photo.

A scikit-learn ``HistGradientBoostingRegressor`` (300 iterations, learning rate 0.05) predicts the best single
global EV (stops, :func:`deepexposure.learning.trainer.best_global_ev`) of a training input from the 51
:func:`deepexposure.learning.models.exposure_features` of its 64x64 preview. ``deepexposure train`` fits it on exactly the
run's training data and writes ``RUN/learned_global.pkl``; ``evaluate -m learned-global:RUN`` applies it. Gradient
boosting on histogram statistics is what a practitioner would try first (scikit-learn does it well, so it is not
written by hand); a policy that does not beat it has not learned exposure.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from deepexposure.errors import ModelError

__all__ = ["LearnedGlobal", "fit_learned_global", "LEARNED_GLOBAL_NAME", "preview_features"]

LEARNED_GLOBAL_NAME = "learned_global.pkl"
_FORMAT = "deepexposure-learned-global"


def preview_features(previews: np.ndarray | torch.Tensor) -> np.ndarray:
    """:func:`deepexposure.learning.models.exposure_features` of previews ``(N,64,64,3)`` float sRGB [0,1] (numpy, NHWC)
    or ``(N,3,64,64)`` tensors -> float32 ``(N, 51)``."""
    from deepexposure.learning.models import exposure_features_batched

    x = previews if isinstance(previews, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(previews, dtype=np.float32)).permute(0, 3, 1, 2)
    return exposure_features_batched(x.float().cpu()).numpy()


class LearnedGlobal:
    """A fitted global-EV regressor. ``predict(previews (N,64,64,3)) -> EVs (N,)`` in stops, within +-``bound``."""

    def __init__(self, model, *, bound: float, n_train: int, seed: int) -> None:
        self.model = model
        self.bound = float(bound)
        self.n_train = int(n_train)
        self.seed = int(seed)

    def predict(self, previews: np.ndarray) -> np.ndarray:
        return np.clip(self.model.predict(preview_features(previews)), -self.bound, self.bound).astype(np.float32)

    def save(self, path: str | os.PathLike) -> Path:
        """Pickle (format tag, model, facts) to ``path`` atomically. Load only files you made (pickle)."""
        from deepexposure.atomic import atomic_write

        payload = {"format": _FORMAT, "version": 1, "model": self.model, "bound": self.bound,
                   "n_train": self.n_train, "seed": self.seed}
        atomic_write(Path(path), lambda fh: pickle.dump(payload, fh))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LearnedGlobal:
        """Load a ``learned_global.pkl`` (or the one in a run folder); bad files raise :class:`ModelError`."""
        path = Path(path)
        if path.is_dir():
            path = path / LEARNED_GLOBAL_NAME
        if not path.is_file():
            raise ModelError(f"no learned-global model at {path} (deepexposure train writes one per run)")
        try:
            with open(path, "rb") as fh:
                d = pickle.load(fh)  # noqa: S301 - our own run files only, documented
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise ModelError(f"cannot read {path}: {type(exc).__name__} (needs scikit-learn: "
                             "pip install 'deepexposure[train]')") from None
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ModelError(f"{path} is not a deepexposure learned-global model")
        return cls(d["model"], bound=d["bound"], n_train=d["n_train"], seed=d["seed"])


def fit_learned_global(inputs: np.ndarray | torch.Tensor, target_evs: np.ndarray, *, bound: float = 3.0,
                       seed: int = 0) -> LearnedGlobal:
    """Fit the regressor on previews ``inputs`` (N,64,64,3 numpy or N,3,64,64 tensor) and their best global EVs
    ``(N,)`` (stops). Needs scikit-learn (the ``train`` extra)."""
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        raise ModelError("the learned-global baseline needs scikit-learn: pip install 'deepexposure[train]'") from None
    feats = preview_features(inputs)
    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed)
    model.fit(feats, np.asarray(target_evs, np.float64))
    return LearnedGlobal(model, bound=bound, n_train=len(feats), seed=seed)
