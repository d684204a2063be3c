"""The one model loader: a model name (``natural``, ``paper``), a training run folder, a global-EV ``.npz``, a policy
``.onnx`` (ONNX Runtime, no torch) or a torch ``policy.pt`` -> the model that picks exposure values.

:func:`load_model` is the entry point (``Enhancer``, ``evaluate``, ``render --segments``, the editor all go through
it); :func:`resolve_model` only finds the file. A ``.pt`` needs torch: it is the one import from
:mod:`deepexposure.learning` made here, on demand (the inference layer stays torch-free otherwise).
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path

from deepexposure.errors import ModelError, need_extra
from deepexposure.image.io import read_head
from deepexposure.inference.global_ev import GlobalEVModel, default_natural_path
from deepexposure.inference.onnx_policy import PolicyBase, file_sha256, policy_segmentation

__all__ = ["MODEL_NAMES", "default_model_path", "is_global_model", "resolve_model", "load_model", "model_segmentation"]

#: Model names ``--model`` accepts besides paths: ``natural`` (the default global-EV model) and ``paper`` (the
#: shipped DeepExposure policy, the paper's configuration).
MODEL_NAMES = ("natural", "paper")

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


def _load_policy(path: str | os.PathLike, *, device: str | None = None) -> PolicyBase:
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
        from deepexposure.inference.onnx_policy import OnnxPolicy

        return OnnxPolicy.load(path, device=device)
    if head[:1] == b"\x08" and not is_zip:  # an ONNX ModelProto starts with its ir_version field (tag 0x08)
        raise ModelError(f"{path} looks like an ONNX model, not a torch policy.pt: name it .onnx")
    need_extra("torch", f"the torch policy {path} (use its ONNX export, or install torch)")
    from deepexposure.learning.policy import Policy

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
    policy = _load_policy(path, device=device)
    if model is not None and str(model) not in MODEL_NAMES and Path(model).is_dir() and path.suffix.lower() == ".onnx":
        _check_run_folder(Path(model), path, policy)
    return path, policy


def model_segmentation(model: str | os.PathLike | None = None) -> dict:
    """The :func:`segment` parameters of a policy (a policy file or a run folder); for None and the global-EV models
    (which use no segments), those of the shipped policy (``paper``)."""
    if is_global_model(model):
        model = "paper"
    return policy_segmentation(load_model(model, device="cpu")[1])
