"""Hostile inputs to the ONNX models, camera RAW input and the editor, found by trying to break them: each must be
one `error:` line (CLI) or a 4xx JSON message (editor), never a traceback, a stray warning, or a file written
where it should not be."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO
from deepexposure.apps.cli import main
from deepexposure.inference.enhance import Enhancer
from deepexposure.inference.loader import default_model_path
from test_hostile import _cli, _one_error  # one copy of the CLI helpers

SAMPLE = REPO / "samples" / "dicm_02.jpg"


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
    monkeypatch.setitem(sys.modules, "torch", None)  # a light install
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
    from deepexposure.learning.policy import Policy

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


# ---------------------------------------------------------------------------------------- RAW input


def test_photos_with_the_wrong_suffix(shared_data, tmp_path, monkeypatch):
    """A NEF named .tif used to be 'enhanced' as its 160x120 preview; a CRW named .png, a JPEG named .CR2 or .dng:
    one line saying what the file is (the JPEG one without rawpy)."""
    raw = shared_data / "raw"
    cases = {"nef.tif": (raw / "RAW_NIKON_D1.NEF", "camera RAW file with a .tif suffix"),
             "crw.png": (raw / "canon_powershot_s40_CRW_0119.CRW", "camera RAW file with a .png suffix"),
             "jpeg.CR2": (SAMPLE, "a JPEG file, not a camera RAW"), "jpeg.dng": (SAMPLE, "name it .jpg")}
    monkeypatch.setitem(sys.modules, "rawpy", None)  # needed for none of them
    for name, (src, needle) in cases.items():
        (tmp_path / name).symlink_to(src)
        out = tmp_path / "out" / f"{name}.jpg"
        _one_error(_cli("enhance", tmp_path / name, "-o", out), name, needle)
        assert not out.parent.exists()


def test_help_texts_name_only_options_the_command_has():
    """edit --help (and segment's) spoke of a --jobs they do not have; edit's of torch devices and .pt models only."""
    from deepexposure.apps.cli import main as group

    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        res = CliRunner().invoke(main, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        if "--jobs" in res.output:
            assert "--jobs" in {o for p in cmd.params for o in p.opts}, name
    text = CliRunner().invoke(main, ["edit", "--help"]).output
    assert ".onnx" in text and "Torch device" not in text


# ---------------------------------------------------------------------------------------- render --recipe


def test_render_refuses_a_recipe_made_for_another_photo(tmp_path):
    """`render --recipe` puts a recipe's EVs on its segment labels: another photo's labels are refused (as the
    editor does), and the recipe's own photo still renders."""
    photos = sorted((REPO / "samples").glob("*.jpg"))
    mine, other = photos[0], photos[-1]
    assert _cli("enhance", mine, "-o", tmp_path / "a" / "mine.jpg", "--recipe", "--renderer", "local",
                "--model", "paper").exit_code == 0  # a policy's recipe has segment labels (a global EV fits any photo)
    recipe = tmp_path / "a" / "mine.recipe.json"
    out = tmp_path / "b" / "other.jpg"
    _one_error(_cli("render", other, "--recipe", recipe, "-o", out), "not made for", other.name, "--ev")
    assert not out.parent.exists()
    assert _cli("render", mine, "--recipe", recipe, "-o", tmp_path / "b" / "again.jpg").exit_code == 0


# ---------------------------------------------------------------------------------------- the editor


@pytest.fixture
def editor(tmp_path: Path) -> dict:
    pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed")
    pytest.importorskip("httpx2", reason="httpx2 (Starlette's TestClient) is not installed")
    from starlette.testclient import TestClient

    from deepexposure.apps.editor.app import create_app
    from deepexposure.apps.editor.session import EditSession
    from deepexposure.apps.pipeline import manual_recipe
    from deepexposure.image.io import read_photo

    src = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE, src)
    photo = read_photo(src)
    session = EditSession(photo, manual_recipe(photo.pixels, [0.5, -0.5], "local"), out_dir=tmp_path, source=src,
                          preview_long_edge=200)
    return {"src": src, "tmp": tmp_path, "session": session, "client": TestClient(create_app(session, "t0k3n"))}


def _save(client, name: str, **extra):
    import json

    body = {"evs": [0.5, -0.5], "renderer": "local", "name": name, **extra}
    return client.post("/api/save", content=json.dumps(body), headers={"X-Token": "t0k3n"})


@pytest.mark.parametrize("name, needle", [
    ("con.jpg", "portable"), ("NUL.png", "portable"), ("com1.tif", "portable"), ("a:b.jpg", "portable"),
    ("x<y.jpg", "portable"), ('say"hi".jpg', "portable"), ("what?.jpg", "portable"), ("photo.jpg.", "portable"),
    pytest.param("é" * 150 + ".jpg", "too long", id="304-bytes"),  # was a 500 'File name too long'
    pytest.param("é" * 124 + ".jpg", "too long", id="recipe-too-long"),  # the photo's name fits, its recipe's not
])
def test_editor_save_names_that_some_system_cannot_hold(editor, name, needle):
    before = sorted(p.name for p in editor["tmp"].iterdir())
    r = _save(editor["client"], name)
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert sorted(p.name for p in editor["tmp"].iterdir()) == before


def test_editor_refuses_another_name_of_the_photo(editor):
    """A hard link to the photo (or, on macOS and Windows, the same name in other letter case) is the photo."""
    alias = editor["tmp"] / "alias.jpg"
    os.link(editor["src"], alias)
    data = editor["src"].read_bytes()
    r = _save(editor["client"], "alias.jpg", overwrite=True)
    assert r.status_code == 400 and "being edited" in r.json()["error"]
    assert editor["src"].read_bytes() == data and os.path.samefile(alias, editor["src"])


def test_editor_concurrent_saves_of_one_name(editor, monkeypatch):
    """Saves of one name at once: one writes, the others are 'exists' (409 for the page), none replaces it."""
    import threading

    from deepexposure.apps.editor import session as session_module
    from deepexposure.apps.editor.session import OutputExists

    real = session_module.render_photo

    def slow(*args, **kwargs):
        time.sleep(0.3)  # every save has passed its existence check before the first one writes (without the fix)
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "render_photo", slow)
    results: list = []

    def save(ev):
        try:
            results.append(editor["session"].save([ev, 0.0], 1.0, "local", "same.jpg"))
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=save, args=(0.2 * i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, tuple) for r in results) == 1, results
    assert all(isinstance(r, OutputExists) for r in results if not isinstance(r, tuple)), results
    r = _save(editor["client"], "same.jpg")
    assert r.status_code == 409 and set(r.json()["exists"]) == {"same.jpg", "same.recipe.json"}


def test_editor_leaves_no_photo_without_its_recipe(editor):
    """The recipe cannot be written (a folder has its name): the photo just written is removed again."""
    (editor["tmp"] / "x.recipe.json").mkdir()
    r = _save(editor["client"], "x.jpg", overwrite=True)
    assert r.status_code >= 400 and r.json()["error"]
    assert not (editor["tmp"] / "x.jpg").exists()
    assert not [p for p in editor["tmp"].iterdir() if p.name.startswith(".")]


def _edit(*args, cwd: Path) -> subprocess.CompletedProcess:
    """`deepexposure edit ARGS --no-browser` in a subprocess that must end by itself (a refusal) within 60 s."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        return subprocess.run([sys.executable, "-m", "deepexposure", "edit", *map(str, args), "--no-browser"],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"edit {args} started serving instead of refusing") from None


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def test_edit_command_refusals_come_first_and_in_one_line(tmp_path):
    """A recipe whose renderer needs the labels it lacks, a port in use (said before the photo is even read) and
    an --out-dir below a file: one error line each, no server started."""
    pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed")
    pytest.importorskip("uvicorn", reason="uvicorn (the 'edit' extra) is not installed")
    import json
    import socket

    from deepexposure.apps.editor.session import EditorError, EditSession
    from deepexposure.image.io import read_photo
    from deepexposure.image.recipe import Recipe

    src = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE, src)
    recipe = {"version": 1, "renderer": "local", "model": "manual", "evs": [0.5, 1.0], "segmentation": None,
              "labels": None}
    (tmp_path / "nolabels.recipe.json").write_text(json.dumps(recipe))
    with pytest.raises(EditorError, match="needs segment labels"):
        EditSession(read_photo(src), Recipe.load(tmp_path / "nolabels.recipe.json"), out_dir=tmp_path, source=src)
    _one_error_line(_edit(src, "--recipe", "nolabels.recipe.json", cwd=tmp_path), "needs segment labels",
                    "--renderer fusion")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _one_error_line(_edit("missing.jpg", "--port", port, cwd=tmp_path), "cannot listen", str(port))
    (tmp_path / "afile").write_text("x")
    _one_error_line(_edit(src, "--out-dir", tmp_path / "afile" / "sub", cwd=tmp_path), "afile is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "nolabels.recipe.json", "photo.jpg"]


def test_editor_url_for_a_wildcard_address():
    """--host 0.0.0.0 listens everywhere, but the URL printed and opened is one a browser can open."""
    pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed")
    from deepexposure.apps.editor.app import browser_url

    assert browser_url("0.0.0.0", 8800, "t") == "http://127.0.0.1:8800/?token=t"
    assert browser_url("::", 8800, "t") == "http://[::1]:8800/?token=t"
    assert browser_url("192.168.1.5", 8800, "t") == "http://192.168.1.5:8800/?token=t"
    assert browser_url("::1", 1, "t") == "http://[::1]:1/?token=t"


def test_editor_page_says_when_a_save_gets_no_answer(tmp_path):
    """The server is gone (Ctrl+C in its terminal) when Save is clicked: the page says so and the button works
    again, instead of showing 'saving…' for ever."""
    pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed")
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed: browser test skipped")
    from test_editor import stop
    from test_editor_browser import CHROMIUM, DRIVER, _wait, opened_editor

    if not (CHROMIUM and DRIVER):
        pytest.skip("no headless browser (apt-get install chromium chromium-driver): browser test skipped")
    with opened_editor(tmp_path) as (proc, driver, _):
        stop(proc)
        driver.find_element("id", "save").click()
        _wait(lambda: driver.find_element("id", "save-status").text == "not saved", timeout=20)
        error = driver.find_element("id", "error")
        assert error.is_displayed() and "does not answer" in error.text
        assert driver.find_element("id", "save").is_enabled()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]
