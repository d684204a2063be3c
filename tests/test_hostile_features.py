"""Hostile inputs to the ONNX models, camera RAW input and the editor, found by trying to break them: each must be
one `error:` line (CLI) or a 4xx JSON message (editor), never a traceback, a stray warning, or a file written
where it should not be."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO
from deepexposure.cli import main
from deepexposure.enhance import Enhancer, default_model_path

SAMPLE = REPO / "samples" / "dicm_02.jpg"


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_error(res, *needles: str) -> str:
    """The run failed with exit code 2 and exactly one `error:` line holding ``needles``; nothing else on stderr
    but progress bars."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "Warning" not in res.stderr, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


# ---------------------------------------------------------------------------------------- model files


def _policy_graph(path: Path, op: str, value: float) -> Path:
    """A graph with a policy's inputs, outputs and metadata (the shipped model's) that runs, but returns
    ``op(mean of the state, value)`` as EV: not an actor (no tanh bound)."""
    onnx = pytest.importorskip("onnx", reason="onnx (the 'train' extra) makes the test graphs")
    from onnx import TensorProto, helper

    k = helper.make_tensor("k", TensorProto.FLOAT, [], [value])
    nodes = [helper.make_node("ReduceMean", ["state"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node(op, ["m", "k"], ["ev"])]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", 8, 64, 64])],
                              [helper.make_tensor_value_info("ev", TensorProto.FLOAT, ["batch"])], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.extend(onnx.load(default_model_path()).metadata_props)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("op, value, needle", [("Mul", 1e9, "outside the +-3 stops"), ("Mul", float("nan"), "nan"),
                                               ("Add", 0.0, None)])
def test_onnx_graph_returning_evs_beyond_its_bound(tmp_path, op, value, needle):
    """An ONNX graph with a policy's metadata whose EVs are huge or NaN is the model's fault, said once, before
    the EVs reach the renderer (no overflow warning, no 'recipe EVs' message blaming the user's recipe)."""
    model = _policy_graph(tmp_path / "g.onnx", op, value)
    out = tmp_path / "o.jpg"
    res = _cli("enhance", SAMPLE, "-o", out, "--model", model)
    if needle is None:  # the same graph with small EVs works: the check does not refuse real models
        assert res.exit_code == 0, res.output
        return
    _one_error(res, "g.onnx", needle, "not a working deepexposure actor")
    assert not out.exists()


def test_renamed_model_files_say_what_they_are(tmp_path, monkeypatch):
    """An ONNX model named .pt and a torch policy named .onnx: the error names the real format (and needs no
    torch for the ONNX one)."""
    onnx_as_pt = tmp_path / "model.pt"
    shutil.copy(default_model_path(), onnx_as_pt)
    pt_as_onnx = tmp_path / "model.onnx"
    shutil.copy(default_model_path("pt"), pt_as_onnx)
    out = tmp_path / "o.jpg"
    monkeypatch.setitem(os.sys.modules, "torch", None)  # a light install
    _one_error(_cli("enhance", SAMPLE, "-o", out, "--model", onnx_as_pt), "looks like an ONNX model", ".onnx")
    _one_error(_cli("enhance", SAMPLE, "-o", out, "--model", pt_as_onnx), "is a torch policy file", ".pt")
    (tmp_path / "empty").mkdir()
    _one_error(_cli("enhance", SAMPLE, "-o", out, "--model", tmp_path / "empty"),
               "without a policy.onnx or policy.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "model.onnx", "model.pt"]


def test_truncated_torch_policy_says_so(tmp_path):
    pytest.importorskip("torch", reason="torch (the 'train' extra) reads .pt policies")
    bad = tmp_path / "policy.pt"
    bad.write_bytes(default_model_path("pt").read_bytes()[:5000])
    _one_error(_cli("enhance", SAMPLE, "-o", tmp_path / "o.jpg", "--model", bad), "not a torch policy file, or a truncated one")


def test_run_folder_onnx_exported_from_another_pt_warns(tmp_path):
    """export-onnx records which policy.pt it read: a run folder whose policy.pt was replaced by another one
    (even one older than the .onnx) gets a warning; the same bytes touched later do not."""
    pytest.importorskip("torch", reason="torch (the 'train' extra) exports policies")
    pytest.importorskip("onnx", reason="onnx (the 'train' extra) exports policies")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(default_model_path("pt"), run / "policy.pt")
    assert _cli("export-onnx", run, "-o", run / "policy.onnx").exit_code == 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        later = time.time() + 5
        os.utime(run / "policy.pt", (later, later))  # touched, same bytes: no warning
        assert Enhancer(run).model_path == run / "policy.onnx"
    from deepexposure.policy import Policy

    other = Policy.load(default_model_path("pt"), device="cpu")
    import torch

    with torch.no_grad():
        other.actor.head[-1].bias.add_(0.5)
    other.save(run / "policy.pt")
    earlier = (run / "policy.onnx").stat().st_mtime - 60
    os.utime(run / "policy.pt", (earlier, earlier))  # older than the .onnx: the old check saw nothing
    with pytest.warns(UserWarning, match="not exported from"):
        Enhancer(run)


def test_export_onnx_into_a_file_path(tmp_path):
    """-o below a file: 'is a file', not 'exists (pass --overwrite)' (which --overwrite could never fix)."""
    pytest.importorskip("torch", reason="torch (the 'train' extra) exports policies")
    blocker = tmp_path / "models"
    blocker.write_bytes(b"a file, not a folder")
    for extra in ([], ["--overwrite"]):
        _one_error(_cli("export-onnx", default_model_path("pt"), "-o", blocker / "x.onnx", *extra),
                   "models is a file")
    assert blocker.read_bytes() == b"a file, not a folder"
