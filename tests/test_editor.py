"""The editor (deepexposure edit) through its HTTP API (Starlette's TestClient): the token on every request, what
is served, preview rendering, saving (atomic, never replacing without overwrite, confined to the output folder,
equal to `render --recipe`), recipes that do not match the photo, missing extras, and the command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REPO

pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed: editor tests skipped")
pytest.importorskip("httpx2", reason="httpx2 (Starlette's TestClient) is not installed: editor tests skipped")

from starlette.testclient import TestClient  # noqa: E402

from deepexposure.apps.cli import main  # noqa: E402
from deepexposure.apps.editor.app import create_app  # noqa: E402
from deepexposure.apps.editor.session import HISTOGRAM_BINS, EditSession, recipe_matches  # noqa: E402
from deepexposure.apps.pipeline import manual_recipe  # noqa: E402
from deepexposure.image.io import read_photo  # noqa: E402
from deepexposure.image.recipe import Recipe  # noqa: E402

TOKEN = "test-token-0123456789"
SAMPLE = REPO / "samples" / "dicm_02.jpg"


@pytest.fixture
def work(tmp_path: Path) -> dict:
    """A photo in tmp/in, outputs in tmp/out, a session seeded with a hand-made local recipe (no model needed)."""
    src = tmp_path / "in" / "photo.jpg"
    src.parent.mkdir()
    shutil.copy(SAMPLE, src)
    photo = read_photo(src)
    recipe = manual_recipe(photo.pixels, [0.8, -0.4, 0.3, 1.0], "local")
    out = tmp_path / "out"
    session = EditSession(photo, recipe, out_dir=out, source=src, preview_long_edge=400)
    client = TestClient(create_app(session, TOKEN))
    return {"src": src, "out": out, "session": session, "client": client, "recipe": recipe, "tmp": tmp_path}


def post(client, path: str, body: dict, token: str | None = TOKEN):
    headers = {"X-Token": token} if token else {}
    return client.post(path, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ------------------------------------------------------------------------------------------ token and routes


def test_every_request_needs_the_token(work):
    c = work["client"]
    for path in ("/", "/editor.js", "/editor.css", "/api/state"):
        assert c.get(path).status_code == 403
        assert c.get(path, params={"token": "wrong"}).status_code == 403
        assert c.get(path, headers={"X-Token": TOKEN[:-1]}).status_code == 403
        assert c.get(path, params={"token": TOKEN}).status_code == 200
    assert post(c, "/api/render", {}, token=None).status_code == 403
    assert post(c, "/api/save", {"evs": [0, 0, 0, 0], "name": "x.jpg"}, token="nope").status_code == 403
    assert not work["out"].exists()  # nothing saved by the refused request
    page = c.get("/", params={"token": TOKEN})
    assert f'editor.js?token={TOKEN}' in page.text and page.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_only_the_page_and_its_files_are_served(work):
    c = work["client"]
    for path in ("/pyproject.toml", "/index.html", "/../README.md", "/%2e%2e/README.md", "/static/editor.js",
                 "/api/../README.md", "/etc/passwd", "/photo.jpg", "/editor.js/..%2f..%2fREADME.md"):
        r = c.get(path, params={"token": TOKEN})
        assert r.status_code in (404, 405), (path, r.status_code)
        assert b"deepexposure" not in r.content[:200] or r.status_code == 404
    state = c.get("/api/state", params={"token": TOKEN}).json()
    assert state["photo"] == "photo.jpg" and state["evs"] == work["recipe"].evs
    assert state["segments"] and state["renderers"] == ["fusion", "local", "rolloff", "balanced"]
    assert state["output"] == "photo.edit.jpg" and state["preview_size"] == [400, 300]


# ------------------------------------------------------------------------------------------ rendering


def test_preview_follows_the_sliders(work):
    c = work["client"]
    evs = list(work["recipe"].evs)
    r = post(c, "/api/render", {"evs": evs, "strength": 1, "renderer": "local"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    first = decode(r.content)
    assert first.shape == (300, 400, 3)
    hist = [int(v) for v in r.headers["X-Histogram"].split(",")]
    assert len(hist) == HISTOGRAM_BINS and sum(hist) == 300 * 400
    brighter = post(c, "/api/render", {"evs": [e + 1 for e in evs], "strength": 1, "renderer": "local"})
    b = decode(brighter.content)
    assert b.mean() > first.mean() + 10  # +1 EV everywhere: clearly brighter
    hist_b = [int(v) for v in brighter.headers["X-Histogram"].split(",")]
    mean_bin = lambda h: np.dot(h, np.arange(len(h))) / sum(h)  # noqa: E731
    assert mean_bin(hist_b) > mean_bin(hist)
    assert float(brighter.headers["X-Clipped"]) >= float(r.headers["X-Clipped"])
    one = post(c, "/api/render", {"evs": [evs[0] + 2, *evs[1:]], "strength": 1, "renderer": "local"})
    diff = np.abs(decode(one.content).astype(int) - first).max(axis=2) > 12
    labels = cv2.resize(work["recipe"].labels, (400, 300), interpolation=cv2.INTER_NEAREST)
    assert diff[labels == 0].mean() > 5 * max(diff[labels != 0].mean(), 1e-3)  # the change is in segment 0
    before = decode(post(c, "/api/render", {"evs": evs, "view": "before"}).content)
    original = cv2.resize(cv2.imread(str(work["src"])), (400, 300), interpolation=cv2.INTER_AREA)
    assert np.abs(before.astype(int) - original).mean() < 4  # "before" is the photo as read (both JPEG-coded)
    seg = decode(post(c, "/api/render", {"evs": evs, "renderer": "local", "view": "segments"}).content)
    assert np.abs(seg.astype(int) - first).mean() > 5  # segments drawn over the edit
    zero = post(c, "/api/render", {"evs": evs, "strength": 0, "renderer": "local"}).content
    assert zero == post(c, "/api/render", {"evs": evs, "view": "before"}).content  # strength 0 = the photo


def test_fusing_renderers_draft_then_full(work):
    c = work["client"]
    evs = list(work["recipe"].evs)
    full = post(c, "/api/render", {"evs": evs, "renderer": "fusion"})
    draft = post(c, "/api/render", {"evs": evs, "renderer": "fusion", "draft": True})
    a, b = decode(full.content), decode(draft.content)
    assert a.shape == b.shape == (300, 400, 3)
    assert 0 < np.abs(a.astype(int) - b).mean() < 6  # the enlarged draft is close to, not the same as, the full


@pytest.mark.parametrize("body, needle", [
    ({"evs": [1, 2]}, "expected 4 EVs"),
    ({"evs": [0, 0, 0, "x"]}, "must be numbers"),
    ({"evs": [0, 0, 0, 11]}, "from -10 to 10"),
    ({"evs": [0, 0, 0, 0], "strength": 1.5}, "strength"),
    ({"evs": [0, 0, 0, 0], "renderer": "magic"}, "not available"),
    ({"evs": [0, 0, 0, 0], "view": "raw"}, "unknown view"),
])
def test_bad_render_requests_are_400_with_a_message(work, body, needle):
    r = post(work["client"], "/api/render", body)
    assert r.status_code == 400 and needle in r.json()["error"]
    r = work["client"].post("/api/render", content=b"{not json", headers={"X-Token": TOKEN})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = work["client"].post("/api/render", content=b"[" * 70000, headers={"X-Token": TOKEN})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    nan = work["client"].post("/api/render", content=b'{"evs": [NaN, 0, 0, 0]}', headers={"X-Token": TOKEN})
    assert nan.status_code == 400


# ------------------------------------------------------------------------------------------ saving


def test_save_equals_render_recipe_and_never_overwrites_silently(work):
    c, out = work["client"], work["out"]
    evs = [1.2, -0.7, 0.25, 0.6]
    body = {"evs": evs, "strength": 0.8, "renderer": "local", "name": "mine.png"}
    r = post(c, "/api/save", body)
    assert r.status_code == 200, r.text
    saved, recipe_file = Path(r.json()["photo"]), Path(r.json()["recipe"])
    assert saved == out / "mine.png" and recipe_file == out / "mine.recipe.json"
    recipe = Recipe.load(recipe_file)
    assert recipe.evs == pytest.approx([e * 0.8 for e in evs]) and recipe.renderer == "local"
    assert recipe.model == "manual" and np.array_equal(recipe.labels, work["recipe"].labels)
    # `render --recipe` reproduces the saved photo exactly
    again = work["tmp"] / "again.png"
    res = CliRunner().invoke(main, ["render", str(work["src"]), "--recipe", str(recipe_file), "-o", str(again)])
    assert res.exit_code == 0, res.output
    assert np.array_equal(read_photo(saved).pixels, read_photo(again).pixels)
    assert read_photo(saved).pixels.shape == (480, 640, 3)  # full resolution, not the preview
    # the saved recipe matches its photo, so `edit --recipe` reopens it
    assert recipe_matches(recipe, read_photo(work["src"])) == 1.0
    # a second save to the same name is refused (409) and changes nothing ...
    before = {p: p.read_bytes() for p in (saved, recipe_file)}
    r = post(c, "/api/save", {**body, "evs": [0, 0, 0, 0]})
    assert r.status_code == 409 and set(r.json()["exists"]) == {"mine.png", "mine.recipe.json"}
    assert {p: p.read_bytes() for p in before} == before
    r = post(c, "/api/save", {**body, "evs": [0, 0, 0, 0], "overwrite": "yes"})  # only JSON true confirms
    assert r.status_code == 400 and "true or false" in r.json()["error"]
    assert {p: p.read_bytes() for p in before} == before
    # ... until confirmed
    r = post(c, "/api/save", {**body, "evs": [0, 0, 0, 0], "overwrite": True})
    assert r.status_code == 200 and Recipe.load(recipe_file).evs == [0, 0, 0, 0]
    assert saved.read_bytes() != before[saved]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("name", ["../evil.jpg", "/tmp/evil.jpg", "sub/evil.jpg", "..\\evil.jpg", ".hidden.jpg",
                                  "evil.exe", "evil", "", "a\x00.jpg", "x" * 300 + ".jpg", "../in/photo.jpg"])
def test_save_names_cannot_leave_the_output_folder(work, name):
    before = tree(work["tmp"])
    r = post(work["client"], "/api/save", {"evs": [0, 0, 0, 0], "renderer": "local", "name": name})
    assert r.status_code == 400 and r.json()["error"]
    assert tree(work["tmp"]) == before


def test_save_refuses_the_photo_itself(tmp_path):
    src = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE, src)
    photo = read_photo(src)
    session = EditSession(photo, manual_recipe(photo.pixels, [0.5], "local"), out_dir=tmp_path, source=src,
                          preview_long_edge=200)
    c = TestClient(create_app(session, TOKEN))
    data = src.read_bytes()
    r = post(c, "/api/save", {"evs": [1], "renderer": "local", "name": "photo.jpg", "overwrite": True})
    assert r.status_code == 400 and "being edited" in r.json()["error"] and src.read_bytes() == data


# ------------------------------------------------------------------------------------------ command line


def test_edit_refuses_bad_input_with_one_line(tmp_path, monkeypatch):
    src = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE, src)
    other = tmp_path / "other.jpg"
    shutil.copy(REPO / "samples" / "msec_01.jpg" if (REPO / "samples" / "msec_01.jpg").exists()
                else sorted((REPO / "samples").glob("*.jpg"))[-1], other)
    other_photo = read_photo(other)
    manual_recipe(other_photo.pixels, [0.5, 1.0, -0.5], "local").save(tmp_path / "other.recipe.json")
    (tmp_path / "bad.json").write_text("{ not json")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    cases = [
        (["edit", str(tmp_path / "missing.jpg")], "no such file"),
        (["edit", str(tmp_path / "bad.jpg")], "not a readable image"),
        (["edit", str(src), "--recipe", str(tmp_path / "other.recipe.json")], "not made for"),
        (["edit", str(src), "--recipe", str(tmp_path / "bad.json")], "bad.json"),
        (["edit", str(src), "--recipe", str(tmp_path / "missing.json")], "missing.json"),
    ]
    for args, needle in cases:
        r = CliRunner().invoke(main, args + ["--no-browser"])
        errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 2 and len(errors) == 1 and needle in errors[0], (args, r.output)
        assert "Traceback" not in r.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    r = CliRunner().invoke(main, ["edit", str(src), "--no-browser"])
    assert r.exit_code == 2 and "pip install 'deepexposure[edit]'" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jpg", "bad.json", "other.jpg", "other.recipe.json",
                                                          "photo.jpg"]  # nothing written


def start_editor(args: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    """Run `deepexposure edit ... --no-browser --port 0` in a subprocess; return it and the URL it prints."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "deepexposure", "edit", *args, "--no-browser", "--port", "0"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/\?token=[\w-]+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the editor did not start: {line!r}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def test_edit_command_serves_the_policy_seeded_page_on_loopback(tmp_path):
    """The real command: the shipped policy seeds the EVs (as `enhance --recipe` would pick them), the server
    listens on 127.0.0.1 only, and the token in the printed URL opens it."""
    src = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE, src)
    proc, url = start_editor([str(src)], tmp_path)
    try:
        base, token = url.split("/?token=")
        state = json.load(urlopen(f"{base}/api/state?token={token}", timeout=30))
        from deepexposure.inference.enhance import Enhancer

        expected = Enhancer().recipe(read_photo(src).pixels)  # the natural look: one global EV...
        assert len(expected.evs) == 1 and state["model"] == expected.model
        assert len(state["evs"]) >= 2 and state["segments"]  # ...given to every segment, one slider each
        assert state["evs"] == pytest.approx(expected.evs * len(state["evs"]))
        with pytest.raises(Exception, match="403"):
            urlopen(f"{base}/api/state", timeout=30)
        body = json.dumps({"evs": state["evs"], "renderer": "local"}).encode()
        img = urlopen(Request(f"{base}/api/render", data=body, headers={"X-Token": token,
                                                                        "Content-Type": "application/json"}),
                      timeout=60).read()
        assert decode(img).shape == (480, 640, 3)
        import socket

        port = int(base.rsplit(":", 1)[1])
        with socket.socket() as s:  # nothing listens on the machine's other addresses
            s.settimeout(2)
            other = socket.gethostbyname(socket.gethostname())
            if not other.startswith("127."):
                assert s.connect_ex((other, port)) != 0
    finally:
        stop(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]  # nothing written without a save


def test_edit_a_raw_file(shared_data, tmp_path):
    """A camera RAW opens in the editor (default rendering as "before"), and a save writes a JPEG with its EXIF
    equal to `render --recipe` on the RAW."""
    pytest.importorskip("rawpy", reason="rawpy (the 'raw' extra) is not installed")
    src = tmp_path / "shot.CRW"
    src.symlink_to(shared_data / "raw" / "canon_powershot_s40_CRW_0119.CRW")
    photo = read_photo(src)
    recipe = manual_recipe(photo.pixels, [-1.0, 0.5, 0.0], "rolloff")
    session = EditSession(photo, recipe, out_dir=tmp_path, source=src)
    assert session.default_output() == "shot.edit.jpg" and session.state()["raw"]
    c = TestClient(create_app(session, TOKEN))
    r = post(c, "/api/render", {"evs": recipe.evs, "renderer": "rolloff"})
    assert r.status_code == 200 and decode(r.content).shape == (762, 1024, 3)  # 2312x1720 reduced
    r = post(c, "/api/save", {"evs": recipe.evs, "renderer": "rolloff", "name": "shot.edit.jpg"})
    assert r.status_code == 200, r.text
    again = tmp_path / "again.jpg"
    res = CliRunner().invoke(main, ["render", str(src), "--recipe", r.json()["recipe"], "-o", str(again)])
    assert res.exit_code == 0, res.output
    saved = tmp_path / "shot.edit.jpg"
    assert saved.read_bytes() == again.read_bytes()
    from PIL import Image

    with Image.open(saved) as im:
        assert im.getexif()[272] == "PowerShot S40"


# ------------------------------------------------------------------------------------------------- looks

def test_look_switch_renders_and_saves_the_expert_style(work):
    """The page offers the looks; switching to expert renders the expert style over the same EVs, and the saved
    recipe (look and style) re-renders the saved photo; an unknown look is a 400 and writes nothing."""
    from deepexposure.image.look import load_look
    from deepexposure.image.render import render

    c, evs = work["client"], work["recipe"].evs
    state = c.get("/api/state", params={"token": TOKEN}).json()
    assert state["look"] == "natural" and state["looks"] == ["natural", "expert"]
    nat = decode(post(c, "/api/render", {"evs": evs, "renderer": "local"}).content).astype(float)
    exp = decode(post(c, "/api/render", {"evs": evs, "renderer": "local", "look": "expert"}).content).astype(float)
    assert np.abs(nat - exp).mean() > 3  # the style changed the picture
    bad = post(c, "/api/render", {"evs": evs, "renderer": "local", "look": "vivid"})
    assert bad.status_code == 400 and "look must be one of" in bad.json()["error"]
    assert post(c, "/api/save", {"evs": evs, "renderer": "local", "look": 7, "name": "x.jpg"}).status_code == 400
    assert not work["out"].exists()
    r = post(c, "/api/save", {"evs": evs, "renderer": "local", "look": "expert", "name": "e.png"})
    assert r.status_code == 200, r.text
    saved = Recipe.load(work["out"] / "e.recipe.json")
    style = load_look("expert").style
    assert saved.look == "expert" and saved.style["bracket"] == list(style.bracket)
    assert saved.style["contrast"] == style.contrast and saved.evs == evs  # the sliders' EVs, not re-scaled
    again = render(read_photo(work["src"]).pixels, saved)
    got = read_photo(work["out"] / "e.png").pixels
    assert np.abs(again - got).max() <= 1 / 255 + 1e-6
