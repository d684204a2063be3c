"""Export a torch policy (``policy.pt`` or a training run) to ONNX for :mod:`deepexposure.inference.onnx_policy`.

Needs the training extra (torch and ``onnx``). The actor is traced by torch's TorchScript-based ONNX exporter
(``torch.onnx.export(..., dynamo=False)``: it needs no package beyond ``onnx``, which writes the metadata; the
newer torch.export-based exporter would also need ``onnxscript``), opset :data:`OPSET`, with a dynamic batch axis.
The global-branch statistics (:func:`deepexposure.learning.models.exposure_features`: a sort, a log2) are not part of the
graph: they become the input ``exposure_features``, computed in numpy by the inference side. Before the file is
written, the ONNX model is run by ONNX Runtime on random states and must agree with torch to
:data:`CHECK_TOLERANCE` EV; the file is written atomically with the policy's arch, config and model id in its
``metadata_props`` (format in :mod:`deepexposure.inference.onnx_policy`).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from deepexposure.atomic import atomic_write_bytes, unwritable
from deepexposure.errors import ModelError, need_extra

__all__ = ["export_onnx", "export_policy_file", "OPSET", "CHECK_TOLERANCE"]

OPSET = 17
#: Largest EV difference (stops) between torch and ONNX Runtime accepted by the export's self-check.
CHECK_TOLERANCE = 1e-4


def _actor_for_export(actor):
    """The actor as a module with explicit inputs: ``(state)`` or ``(state, exposure_features)`` -> ``ev``."""
    import torch

    class _Exported(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, state, feats=None):
            return self.inner(state, feats)

    return _Exported(actor).eval()


def _example_inputs(policy, n: int, seed: int) -> tuple:
    """Random but plausible episode inputs for ``n`` states: random previews, random masks, step planes."""
    from deepexposure.inference import episode

    rng = np.random.default_rng(seed)
    size = int(policy.arch.get("size", 64))
    s0 = rng.uniform(0, 1, (n, 3, size, size)).astype(np.float32) ** rng.uniform(0.3, 3, (n, 1, 1, 1)).astype(np.float32)
    mask = (rng.uniform(0, 1, (n, 1, size, size)) < 0.4).astype(np.float32)
    cur = episode.step(s0, s0, mask, rng.uniform(-2, 2, n))
    state = np.concatenate([episode.state(s0[i : i + 1], mask[i : i + 1], cur[i : i + 1], i % policy.segments,
                                          policy.segments) for i in range(n)])
    feats = episode.exposure_features(s0.transpose(0, 2, 3, 1))
    return state, feats


def export_onnx(policy, path: str | os.PathLike, *, overwrite: bool = False, source_sha256: str | None = None) -> Path:
    """Write ``policy`` (a :class:`deepexposure.learning.policy.Policy`) as an ONNX model to ``path`` (atomic; an existing
    file is refused unless ``overwrite``); returns the path. ``source_sha256``: the SHA-256 of the policy.pt file
    it was loaded from, stored in the metadata (a run folder's check). Raises :class:`ModelError` if ONNX Runtime
    does not reproduce the torch EVs within :data:`CHECK_TOLERANCE`."""
    need_extra("torch", "exporting a policy to ONNX")
    need_extra("onnx", "exporting a policy to ONNX")
    import onnx
    import onnxruntime as ort
    import torch

    actor = policy.actor.to("cpu").eval()
    branch = bool(getattr(actor, "global_branch", False))
    state, feats = _example_inputs(policy, 8, seed=0)
    args = (torch.from_numpy(state), torch.from_numpy(feats)) if branch else (torch.from_numpy(state),)
    names = ["state", "exposure_features"] if branch else ["state"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices say nothing about this model
        torch.onnx.export(_actor_for_export(actor), args, buf, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["ev"], dynamic_axes={**{n: {0: "batch"} for n in names}, "ev": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    meta = {"format": "deepexposure-policy", "version": "1", "model_id": policy.model_id,
            "arch": json.dumps(policy.arch, sort_keys=True), "config": json.dumps(policy.config, sort_keys=True)}
    if source_sha256:
        meta["source_sha256"] = source_sha256
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"deepexposure policy {policy.model_id}: state (B,8,S,S) [+ exposure_features (B,51)] "
                        "-> ev (B,) stops")
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    # self-check on fresh inputs (not the ones traced with)
    state, feats = _example_inputs(policy, 16, seed=1)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = {"state": state, **({"exposure_features": feats} if branch else {})}
    got = sess.run(["ev"], feed)[0]
    with torch.no_grad():
        want = actor(*(torch.from_numpy(v) for v in feed.values())).numpy()
    err = float(np.max(np.abs(got - want)))
    if not err <= CHECK_TOLERANCE:
        raise ModelError(f"the ONNX export disagrees with torch by {err:.2g} EV (> {CHECK_TOLERANCE:g}); not written")
    return atomic_write_bytes(Path(path), data, overwrite=overwrite)


def _policy_source(src: Path) -> Path:
    """The ``policy.pt`` of ``src`` (a file or a training run folder); bad input raises :class:`ModelError`."""
    if src.is_dir():
        pt = src / "policy.pt"
        if not pt.is_file():
            raise ModelError(f"{src} is a folder without a policy.pt (not a training run)")
        return pt
    if not src.exists():
        raise ModelError(f"policy file not found: {src}")
    if src.suffix.lower() == ".onnx":
        raise ModelError(f"{src} is already an ONNX model; export-onnx reads a policy.pt or a training run folder")
    return src


def export_policy_file(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Export the policy of ``src`` (``policy.pt`` or a run folder) to ``dst`` (a ``.onnx`` file, or a folder:
    ``dst/policy.onnx``); returns the written path. Bad input raises :class:`ModelError` before anything is written."""
    need_extra("torch", "export-onnx")
    from deepexposure.learning.policy import Policy

    pt = _policy_source(Path(src))
    text = os.fspath(dst)
    out = Path(text)
    if text.endswith(("/", os.sep)) or out.is_dir():
        out = out / "policy.onnx"
    if out.suffix.lower() != ".onnx":
        raise ModelError(f"-o {text}: the output must be a .onnx file (or a folder, for FOLDER/policy.onnx)")
    blocked = unwritable(out.parent)  # before the export's work
    if blocked:
        raise ModelError(f"cannot write {out}: {blocked}")
    if out.is_dir():
        raise ModelError(f"cannot write {out}: it is a folder")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ModelError(f"{out} exists (pass --overwrite to replace it)")
    policy = Policy.load(pt, device="cpu")
    from deepexposure.inference.onnx_policy import file_sha256

    try:
        return export_onnx(policy, out, overwrite=overwrite, source_sha256=file_sha256(pt))
    except FileExistsError:
        raise ModelError(f"{out} exists (pass --overwrite to replace it)") from None
    except OSError as exc:
        raise ModelError(f"cannot write {out}: {exc.strerror or exc}") from None
