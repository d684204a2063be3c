"""The natural exposure model: one global EV per photo from boosted trees, evaluated in numpy.

The trees are scikit-learn's ``HistGradientBoostingRegressor`` fitted on the 51
:func:`deepexposure.inference.episode.exposure_features` of 64x64 previews (the learned-global method of docs/learning.md,
findings 13 and 21), exported to plain arrays so that inference needs neither scikit-learn nor torch: a
tree walk over a few hundred small trees is a dozen vectorised numpy steps, which ONNX's tree operator would
not make faster at one photo per call, and it keeps the light install light. The file is an ``.npz`` (no
pickle) with the node arrays and a JSON ``meta`` (format, version, provenance), validated on load.
"""

from __future__ import annotations

import json
import os
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from deepexposure.errors import ModelError

__all__ = ["GlobalEVModel", "trees_from_sklearn", "default_natural_path", "NATURAL_MODEL_ID"]

_FORMAT = "deepexposure-global-ev"
NATURAL_MODEL_ID = "natural"
_NODE_FIELDS = ("feature", "threshold", "left", "right", "value", "is_leaf", "missing_left")
#: Upper bounds checked on load (a corrupt or hostile file fails before it allocates much).
MAX_TREES, MAX_NODES = 5000, 4096


def default_natural_path() -> Path:
    """The shipped natural model, ``deepexposure/assets/natural.npz``."""
    return Path(str(resources.files("deepexposure") / "assets" / "natural.npz"))


def trees_from_sklearn(model) -> dict[str, np.ndarray]:
    """Node arrays (trees x nodes, padded) of a fitted scikit-learn ``HistGradientBoostingRegressor``."""
    preds = [p[0] for p in model._predictors]  # one TreePredictor per iteration (single output)
    n = max(len(p.nodes) for p in preds)
    t = len(preds)
    out = {"feature": np.zeros((t, n), np.int32), "threshold": np.zeros((t, n), np.float64),
           "left": np.zeros((t, n), np.int32), "right": np.zeros((t, n), np.int32),
           "value": np.zeros((t, n), np.float64), "is_leaf": np.ones((t, n), np.bool_),
           "missing_left": np.zeros((t, n), np.bool_)}
    for i, p in enumerate(preds):
        nd = p.nodes
        if nd["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        k = len(nd)
        out["feature"][i, :k] = nd["feature_idx"]
        out["threshold"][i, :k] = nd["num_threshold"]
        out["left"][i, :k] = nd["left"]
        out["right"][i, :k] = nd["right"]
        out["value"][i, :k] = nd["value"]
        out["is_leaf"][i, :k] = nd["is_leaf"].astype(bool)
        out["missing_left"][i, :k] = nd["missing_go_to_left"].astype(bool)
    out["baseline"] = np.asarray(model._baseline_prediction, np.float64).reshape(-1)[:1]
    return out


def _check_headers(z, path: Path) -> None:
    """Refuse an ``.npz`` whose arrays declare more cells than a model can have (a small file that would decompress
    to gigabytes) or an object dtype, reading only each member's ``.npy`` header."""
    limit = MAX_TREES * MAX_NODES
    for name in z.files:
        with z.zip.open(f"{name}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
        if dtype.hasobject or int(np.prod(shape, dtype=np.float64)) > limit:
            raise ModelError(f"{path}: malformed global-EV model ({name}: {shape} {dtype})")


class GlobalEVModel:
    """Boosted trees ``exposure features (N, F) -> global EV (N,)`` in stops, clipped to +-``bound``."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.arrays = arrays
        self.meta = dict(meta)
        self.bound = float(meta.get("bound", 3.0))
        self.n_features = int(meta.get("n_features", 51))
        self.model_id = str(meta.get("model_id", NATURAL_MODEL_ID))

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        """EVs (stops, float32 (N,)) of features ``(N, n_features)``: the sum of each tree's leaf plus the baseline."""
        x = np.asarray(feats, np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (N, {self.n_features}), got {x.shape}")
        a = self.arrays
        t = a["feature"].shape[0]
        rows = np.arange(t)[None, :]
        node = np.zeros((x.shape[0], t), np.int64)
        for _ in range(a["feature"].shape[1]):  # each step goes one level down; leaves stay put
            leaf = a["is_leaf"][rows, node]
            if leaf.all():
                break
            f = a["feature"][rows, node]
            v = np.take_along_axis(x, f, axis=1)
            go_left = np.where(np.isnan(v), a["missing_left"][rows, node], v <= a["threshold"][rows, node])
            nxt = np.where(go_left, a["left"][rows, node], a["right"][rows, node])
            node = np.where(leaf, node, nxt)
        ev = a["value"][rows, node].sum(1) + a["baseline"][0]
        return np.clip(ev, -self.bound, self.bound).astype(np.float32)

    def predict(self, previews: np.ndarray) -> np.ndarray:
        """EVs (stops) of previews ``(N, 64, 64, 3)`` (or one ``(64, 64, 3)``) float sRGB [0,1]."""
        from deepexposure.inference.episode import exposure_features

        p = np.asarray(previews, np.float32)
        return self.predict_features(exposure_features(p[None] if p.ndim == 3 else p))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to an ``.npz`` atomically."""
        from deepexposure.atomic import atomic_write

        meta = json.dumps({"format": _FORMAT, "version": 1, **self.meta, "bound": self.bound,
                           "n_features": self.n_features, "model_id": self.model_id})
        payload = {k: self.arrays[k] for k in (*_NODE_FIELDS, "baseline")}
        atomic_write(Path(path), lambda fh: np.savez_compressed(fh, meta=np.array(meta), **payload))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> GlobalEVModel:
        """Load a model file (None: the shipped natural model); a bad file raises :class:`ModelError`."""
        path = Path(path) if path is not None else default_natural_path()
        if not path.is_file():
            raise ModelError(f"global-EV model not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                _check_headers(z, path)  # sizes from the .npy headers, before anything is decompressed
                meta = json.loads(str(z["meta"]))
                arrays = {k: np.asarray(z[k]) for k in (*_NODE_FIELDS, "baseline")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path}: not a global-EV model ({type(exc).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("version") != 1:
            raise ModelError(f"{path}: not a deepexposure global-EV model (format/version)")
        shape = arrays["feature"].shape
        n_feat = meta.get("n_features", 51)
        bound = meta.get("bound", 3.0)
        if (len(shape) != 2 or not 1 <= shape[0] <= MAX_TREES or not 1 <= shape[1] <= MAX_NODES
                or any(arrays[k].shape != shape for k in _NODE_FIELDS) or arrays["baseline"].shape != (1,)
                or not isinstance(n_feat, int) or not 1 <= n_feat <= 1024
                or not isinstance(bound, (int, float)) or not 0 < bound <= 10):
            raise ModelError(f"{path}: malformed global-EV model (array shapes or metadata)")
        ok = (((arrays["feature"] >= 0) & (arrays["feature"] < n_feat)) | arrays["is_leaf"]).all()
        for k in ("left", "right"):
            ok &= (((arrays[k] >= 0) & (arrays[k] < shape[1])) | arrays["is_leaf"]).all()
        if not ok or not np.isfinite(arrays["value"]).all() or not np.isfinite(arrays["baseline"]).all():
            raise ModelError(f"{path}: malformed global-EV model (node indices or values)")
        arrays = {"feature": arrays["feature"].astype(np.int64), "threshold": arrays["threshold"].astype(np.float64),
                  "left": arrays["left"].astype(np.int64), "right": arrays["right"].astype(np.int64),
                  "value": arrays["value"].astype(np.float64), "is_leaf": arrays["is_leaf"].astype(bool),
                  "missing_left": arrays["missing_left"].astype(bool),
                  "baseline": arrays["baseline"].astype(np.float64)}
        return cls(arrays, meta)
