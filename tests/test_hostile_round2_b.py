"""Hostile input, second round (issue 20, part B): train's resume horizon and config checks, an interrupted first
run, the editor's HTTP body limits and number checks, an unwritable --out-dir, and the cases of the hostile pass.

Each case is one ``error:`` line and exit 2 (HTTP: a 4xx with a JSON error), never a traceback or a stray file.
Training runs are tiny (a few steps of small networks on 40x50 photos)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from test_hostile import _cli, _one_error  # the same one-line-error checks as round 1

SRC = REPO / "src"

#: A tiny training config (small networks, few steps) as --config takes it.
TINY = {"model": {"width": 8, "critic_width": 8, "hidden": 16},
        "rl": {"segments": 2, "batch_size": 4, "episodes_per_task": 2, "critic_warmup": 1, "warmup_n_critic": 1,
               "n_critic": 1},
        "run": {"steps": 2, "threads": 1, "checkpoint_every": 100}}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def photos(tmp_path: Path) -> dict:
    """Three dark inputs, three bright experts (40x50 PNGs) and the tiny config file."""
    rng = np.random.default_rng(1)
    for name, scale in (("inputs", 60), ("experts", 255)):
        d = tmp_path / name
        d.mkdir()
        for i in range(3):
            Image.fromarray((rng.random((40, 50, 3)) * scale).astype(np.uint8)).save(d / f"{i}.png")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    return {"inputs": tmp_path / "inputs", "experts": tmp_path / "experts", "config": cfg, "tmp": tmp_path}


def _train_args(photos: dict, out: Path, *extra) -> list:
    return ["train", "--inputs", photos["inputs"], "--experts", photos["experts"], "--out", out,
            "--config", photos["config"], *extra]


# --------------------------------------------------------------------------------------------- 1. resume horizon


def test_resume_with_more_steps_trains_longer(photos):
    from deepexposure.learning.checkpoint import load_checkpoint
    from deepexposure.learning.config import TrainConfig

    out = photos["tmp"] / "runs" / "r"
    r = _cli(*_train_args(photos, out, "--steps", "2"))
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    r = _cli(*_train_args(photos, out, "--steps", "4", "--resume"))
    assert r.exit_code == 0, r.output
    assert "step 4: policy written" in r.stderr
    d = load_checkpoint(out / "checkpoint.pt")
    assert d["step"] == 4 and d["config"]["run"]["steps"] == 4
    assert TrainConfig.load(out / "config.json").run.steps == 4
    lr = d["opt_actor"]["param_groups"][0]
    assert lr["lr"] == pytest.approx(lr["initial_lr"] * TrainConfig().optim.final_lr_fraction)  # new horizon's end
    # fewer steps than done, or an option that changes what is learned: refused
    _one_error(_cli(*_train_args(photos, out, "--steps", "3", "--resume")), "already at step 4")
    _one_error(_cli(*_train_args(photos, out, "--steps", "6", "--segments", "3", "--resume")), "rl.segments")
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


# --------------------------------------------------------------------------------------------- 2-4. editor bodies

TOKEN = "round2-token-0123456789"


@pytest.fixture
def editor(tmp_path: Path) -> dict:
    """An editor session on the sample photo (4 segments, local renderer), outputs in tmp/out, and its app."""
    pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed")
    import shutil

    from deepexposure.apps.editor.app import create_app
    from deepexposure.apps.editor.session import EditSession
    from deepexposure.apps.pipeline import manual_recipe
    from deepexposure.image.io import read_photo

    src = tmp_path / "in" / "photo.jpg"
    src.parent.mkdir()
    shutil.copy(REPO / "samples" / "dicm_02.jpg", src)
    photo = read_photo(src)
    session = EditSession(photo, manual_recipe(photo.pixels, [0.8, -0.4, 0.3, 1.0], "local"), out_dir=tmp_path / "out",
                          source=src, preview_long_edge=200)
    return {"src": src, "out": tmp_path / "out", "session": session, "app": create_app(session, TOKEN)}


@pytest.fixture
def client(editor):
    pytest.importorskip("httpx2", reason="httpx2 (Starlette's TestClient) is not installed")
    from starlette.testclient import TestClient

    return TestClient(editor["app"], raise_server_exceptions=False)


def _post(client, path: str, raw: bytes | str, **headers):
    return client.post(path, content=raw, headers={"X-Token": TOKEN, "Content-Type": "application/json", **headers})


@pytest.mark.parametrize("body", [
    pytest.param('{"evs": [0, 0, 0, 1%s]}' % ("0" * 400), id="huge-ev"),
    pytest.param('{"evs": [0, 0, 0, 0], "strength": 1%s}' % ("0" * 400), id="huge-strength"),
    pytest.param('{"evs": [0, 0, 0, -1%s]}' % ("0" * 400), id="huge-negative-ev"),
])
@pytest.mark.parametrize("path", ["/api/render", "/api/save"])
def test_a_400_digit_number_is_a_400(client, editor, body, path):
    r = _post(client, path, body.replace("}", ', "name": "x.jpg"}') if path == "/api/save" else body)
    assert r.status_code == 400, r.text
    assert "from" in r.json()["error"] and "too large" in r.json()["error"]
    assert not editor["out"].exists()


def test_a_deeply_nested_body_is_a_400(client):
    closed = '{"evs": ' + "[" * 32000 + "]" * 32000 + "}"  # valid JSON, 32,000 deep
    unclosed = '{"evs": ' + "[" * 40000  # 40,000 deep, the recursion fails before the missing ends are seen
    for raw in (closed, unclosed):
        assert len(raw) < 64 * 1024
        for path in ("/api/render", "/api/save"):
            r = _post(client, path, raw)
            assert r.status_code == 400 and "nested too deeply" in r.json()["error"], r.text


def _serve(app):
    """Run ``app`` on a real uvicorn server in a thread (a free loopback port) -> (port, stop)."""
    import threading

    import uvicorn

    from deepexposure.apps.editor.app import listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()

    return sock.getsockname()[1], stop


def test_a_chunked_body_is_not_read_past_the_limit(editor):
    """A chunked body (no Content-Length) of limit+1 bytes, its end never sent: refused at once (413, closed);
    reading it whole first would wait for the end forever (and a 400 MB one took 470 MB of memory)."""
    import socket

    from deepexposure.apps.editor.app import _MAX_BODY

    port, stop = _serve(editor["app"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(b"POST /api/render HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Token: " + TOKEN.encode() +
                      b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b" " * 8192
            sent = 0
            while sent <= _MAX_BODY:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            reply = b""
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break  # the server closed the connection
                    reply += data
            except TimeoutError:
                pytest.fail(f"no answer within 15 s to a body over the limit (reply so far: {reply[:200]!r})")
        head = reply.split(b"\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 413"), reply[:300]
        assert b"too large" in reply
    finally:
        stop()


# --------------------------------------------------------------------------------------------- 5. --config


@pytest.mark.parametrize("text, needles", [
    pytest.param("steps = 10", ["not JSON"], id="not-json"),
    pytest.param("[1, 2]", ["JSON object", "list"], id="array"),
    pytest.param('{"rl": {"bogus": 1}}', ["rl.bogus"], id="unknown-key"),
    pytest.param('{"rl": {"segments": 0}}', ["rl.segments", "from 1 to 16"], id="segments-0"),
    pytest.param('{"steps": 10}', ["unknown config key steps", "run.steps"], id="flat-key"),
    pytest.param('{"run": {"steps": "10"}}', ["run.steps", "whole number"], id="string-number"),
    pytest.param('{"optim": {"lr_actor": NaN}}', ["optim.lr_actor", "finite"], id="nan"),
    pytest.param('{"rl": {"variant": "III"}}', ["rl.variant", "I or II"], id="variant"),
    pytest.param('{"run": {"seed": -1}}', ["run.seed"], id="negative-seed"),
    pytest.param('{"model": {"size": 32}}', ["model.size", "64"], id="size"),
    pytest.param('{"rl": {"degrade": {"p_spot": 1}}}', ["rl.degrade", "p_spot"], id="degrade-key"),
    pytest.param('{"rl": []}', ["config key rl", "JSON object"], id="section-array"),
])
def test_a_bad_config_is_one_line_and_leaves_nothing(photos, text, needles):
    bad = photos["tmp"] / "bad.json"
    bad.write_text(text)
    out = photos["tmp"] / "runs" / "new"
    r = _cli("train", "--inputs", photos["inputs"], "--experts", photos["experts"], "--out", out, "--config", bad)
    _one_error(r, "bad.json", *needles)
    assert not out.exists() and not (photos["tmp"] / "runs").exists()


def test_bad_values_from_the_command_line_leave_nothing(photos):
    out = photos["tmp"] / "runs" / "new"
    r = _cli(*_train_args(photos, out, "--seed", "-1"))
    assert r.exit_code == 2 and "--seed" in r.output and not out.exists()
    empty = photos["tmp"] / "empty"
    empty.mkdir()
    r = _cli("train", "--inputs", empty, "--experts", empty, "--out", out, "--config", photos["config"])
    _one_error(r)
    assert not out.exists()  # a data error after the run folder was made: removed again


def test_a_bad_config_under_torchrun_is_one_line(photos):
    pytest.importorskip("torch.distributed.run")
    bad = photos["tmp"] / "bad.json"
    bad.write_text('{"rl": {"segments": 0}}')
    out = photos["tmp"] / "runs" / "new"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "deepexposure", "train", "--inputs", str(photos["inputs"]), "--experts", str(photos["experts"]),
           "--out", str(out), "--config", str(bad)]
    p = subprocess.run(cmd, env={**_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    if "error: config key" not in p.stderr and p.returncode != 0 and "rl.segments" not in p.stderr:
        pytest.skip(f"torchrun could not start here: {p.stderr.strip().splitlines()[-1:]}")
    assert p.returncode != 0
    ours = [ln for ln in p.stderr.splitlines() if "rl.segments" in ln and ln.startswith("error:")]
    assert len(ours) == 1, p.stderr
    assert "/deepexposure/" not in p.stderr, p.stderr  # no traceback of ours (torchrun prints its own report)
    assert not out.exists()


# --------------------------------------------------------------------------------------------- 6. Ctrl-C


def test_ctrl_c_before_the_first_checkpoint_leaves_a_resumable_run(photos):
    """SIGINT once training runs (its progress bar is seen), long before the first checkpoint: the step under way
    ends, a checkpoint is written, the exit is 130; --resume continues it."""
    from deepexposure.learning.checkpoint import load_checkpoint

    cfg = json.loads(photos["config"].read_text())
    cfg["run"].update(steps=1000, checkpoint_every=1000)
    photos["config"].write_text(json.dumps(cfg))
    out = photos["tmp"] / "runs" / "r"
    cmd = [sys.executable, "-m", "deepexposure", *map(str, _train_args(photos, out))]
    proc = subprocess.Popen(cmd, env={**_env(), "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and b"/1000" not in seen:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert b"/1000" in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 1 <= step < 1000
    r = _cli(*_train_args(photos, out, "--resume", "--steps", step + 1))
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "checkpoint.pt")["step"] == step + 1


def test_a_run_killed_before_its_first_checkpoint_is_started_again(photos):
    """What a run killed (SIGKILL, a second Ctrl+C) before its first checkpoint leaves: config.json and tb/. A rerun
    starts it again; --resume says so."""
    out = photos["tmp"] / "runs" / "r"
    (out / "tb").mkdir(parents=True)
    (out / "tb" / "events.out.tfevents.1").write_bytes(b"x")
    (out / "config.json").write_text(json.dumps(TINY))
    _one_error(_cli(*_train_args(photos, out, "--resume")), "stopped before its first checkpoint", "without --resume")
    r = _cli(*_train_args(photos, out))
    assert r.exit_code == 0, r.output
    assert (out / "checkpoint.pt").is_file() and not (out / "tb" / "events.out.tfevents.1").exists()
    (out / "notes.txt").write_text("mine")  # anything else in the folder: still refused
    (out / "checkpoint.pt").unlink()
    _one_error(_cli(*_train_args(photos, out)), "not empty")


# --------------------------------------------------------------------------------------------- 7. edit --out-dir


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder no file can be written in: a chmod 555 one, or (root ignores modes) one of /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    import tempfile

    folder = Path("/sys/fs")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        yield folder
        return
    pytest.skip("running as root without a read-only folder (/sys/fs) to test with")


@pytest.mark.parametrize("sub", ["", "new/deeper"])
def test_edit_refuses_an_unwritable_out_dir_at_start(tmp_path, read_only_folder, sub):
    pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed")
    import shutil

    src = tmp_path / "photo.jpg"
    shutil.copy(REPO / "samples" / "dicm_02.jpg", src)
    out = read_only_folder / sub if sub else read_only_folder
    r = _cli("edit", src, "--no-browser", "--out-dir", out)
    _one_error(r, "--out-dir", "not writable")
    assert "deepexposure edit:" not in r.output  # never served


# --------------------------------------------------------------------------------------------- 8. hostile pass: train


@pytest.mark.parametrize("case", ["out-is-a-file", "out-under-a-file", "out-unwritable", "bad-device", "no-cuda"])
def test_train_refuses_a_bad_out_or_device_before_any_work(photos, case):
    afile = photos["tmp"] / "afile"
    afile.write_text("x")
    out = {"out-is-a-file": afile, "out-under-a-file": afile / "sub", "out-unwritable": Path("/sys/fs/run")
           }.get(case, photos["tmp"] / "runs" / "r")
    if case == "out-unwritable" and (os.geteuid() != 0 or not Path("/sys/fs").is_dir()):
        pytest.skip("needs a folder not even root can write in (/sys/fs)")
    if case == "no-cuda":
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    extra = {"bad-device": ["--device", "bogus"], "no-cuda": ["--device", "cuda"]}.get(case, [])
    r = _cli(*_train_args(photos, out, *extra))
    _one_error(r, "device" if extra else "--out")
    assert "input previews" not in r.output  # refused before the data was built
    assert not (photos["tmp"] / "runs").exists() and afile.read_text() == "x"


@pytest.mark.parametrize("option", ["--minutes", "--timeout"])
def test_train_refuses_nan_durations(photos, option):
    r = _cli(*_train_args(photos, photos["tmp"] / "runs" / "r", option, "nan"))
    assert r.exit_code == 2 and option in r.output and "nan" in r.output, r.output
    assert not (photos["tmp"] / "runs").exists()


# --------------------------------------------------------------------------------------------- 8. hostile pass: editor


@pytest.mark.parametrize("path, body, needle", [
    ("/api/render", '{"evs": "0000"}', "list of numbers"),  # was taken as [0, 0, 0, 0]
    ("/api/render", '{"evs": {"0": 1, "1": 2, "2": 3, "3": 4}}', "list of numbers"),
    ("/api/render", '{"evs": [0, 0, 0, 0], "strength": true}', "strength"),  # was taken as 1
    ("/api/render", '{"evs": [0, 0, 0, true]}', "EVs"),
    ("/api/render", '{"evs": [0, 0, 0, null]}', "EVs"),
    ("/api/render", '{"evs": [0, 0, 0, -Infinity]}', "EVs"),
    ("/api/render", '{"evs": [0, 0, 0, 0], "strength": Infinity}', "strength"),
    ("/api/render", '{"evs": [0, 0, 0, 0], "draft": "no"}', "draft must be true or false"),  # was a draft
    ("/api/render", '{"evs": [0, 0, 0, 0], "view": {"a": 1}}', "view"),
    ("/api/save", '{"evs": [0, 0, 0, 0], "name": "x.jpg", "overwrite": "yes"}', "overwrite must be true or false"),
    ("/api/save", '{"evs": [0, 0, 0, 0], "name": {"a": 1}}', "plain file name"),
    ("/api/save", '{"evs": [0, 0, 0, 0], "name": "..\\\\x.jpg"}', "plain file name"),
])
def test_badly_typed_fields_are_a_400(client, editor, path, body, needle):
    r = _post(client, path, body)
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert not editor["out"].exists()


def test_wrong_routes_methods_types_and_tokens_are_json_errors(client):
    cases = [(client.get, "/api/render", {}, 405), (client.put, "/api/save", {}, 405), (client.delete, "/", {}, 405),
             (client.get, "/a/b", {}, 404), (client.get, "/api/nope", {}, 404),
             (client.post, "/api/render", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
             (client.post, "/api/save", {"Content-Type": "text/plain"}, 415),
             (client.get, "/api/state", {"X-Token": "wrong"}, 403)]
    for method, path, headers, status in cases:
        r = method(path, headers={"X-Token": TOKEN, **headers})
        assert r.status_code == status, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json") and r.json()["error"], (path, r.text)


def test_concurrent_saves_deleted_photo_and_deleted_out_dir(client, editor):
    """Four saves of one name at once: one wins, three get 409; the photo deleted while editing, the output folder
    deleted: the edit is still saved; the output folder replaced by a file: a 400, nothing written."""
    import shutil
    import threading

    body = '{"evs": [0.2, 0, 0, 0], "name": "c.png"}'
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(_post(client, "/api/save", body).status_code))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409]
    editor["src"].unlink()
    assert _post(client, "/api/save", body.replace("c.png", "d.png")).status_code == 200
    shutil.rmtree(editor["out"])
    assert _post(client, "/api/save", body.replace("c.png", "e.png")).status_code == 200
    assert sorted(p.name for p in editor["out"].iterdir()) == ["e.png", "e.recipe.json"]
    shutil.rmtree(editor["out"])
    editor["out"].write_text("x")
    r = _post(client, "/api/save", body)
    assert r.status_code == 400 and "is a file" in r.json()["error"]
    assert editor["out"].read_text() == "x"


# --------------------------------------------------------------------------------------------- 8. hostile pass: export


def test_export_onnx_refuses_an_unwritable_folder_first(tmp_path, read_only_folder):
    pytest.importorskip("torch")
    src = tmp_path / "policy.pt"
    src.write_bytes(b"not read: the output folder is refused first")
    _one_error(_cli("export-onnx", src, "-o", read_only_folder / "x.onnx"), "not writable")


def test_resume_from_a_corrupt_checkpoint_is_one_line(photos):
    pytest.importorskip("torch")
    out = photos["tmp"] / "runs" / "r"
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(TINY))
    (out / "checkpoint.pt").write_bytes(b"garbage, not a checkpoint")
    line = _one_error(_cli(*_train_args(photos, out, "--resume")), "cannot read checkpoint", "corrupt")
    assert "weights_only" not in line


@pytest.mark.parametrize("option, value", [("--threads", "1000000000"), ("--seed", str(10**23))])
def test_train_refuses_absurd_threads_and_seeds_as_options(photos, option, value):
    """--threads 10^9 made OpenMP abort the process (an empty run folder left); a 24-digit --seed was refused as
    a config key."""
    from deepexposure.apps.cli import train as cli_train
    from deepexposure.learning import config

    assert (cli_train._MAX_THREADS, cli_train._MAX_SEED) == (config.MAX_THREADS, config.MAX_SEED)
    r = _cli(*_train_args(photos, photos["tmp"] / "runs" / "r", option, value))
    assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output, r.output
    assert not (photos["tmp"] / "runs").exists()
