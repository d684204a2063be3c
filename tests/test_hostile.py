"""Hostile input (issue 11): every case is one ``error:`` line and exit 2, no lost edit, no orphan, no stray file.

Photos are tiny and made here (no shared data needed). Most cases run the CLI in-process (Click's CliRunner,
exceptions not caught: a traceback fails the test); the kill and orphan cases run real processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import REPO
from deepexposure.apps.batch import Job, plan_jobs, run_batch
from deepexposure.apps.cli import main
from deepexposure.apps.cli.common import report
from deepexposure.atomic import clean_stale, is_temp_name, temp_path
from deepexposure.errors import DeepExposureError
from deepexposure.image.recipe import Recipe

SRC = REPO / "src"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    """A small photo with some structure (several segments), any supported suffix."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.5 * x, 0.1 + 0.4 * y, 0.3 * (x > 0.5)], axis=2) + 0.05 * rng.random((h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def _cli(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def _one_error(res, *needles: str) -> str:
    """The run failed with exactly one ``error:`` line (and no traceback); returns that line."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".deepexposure-" in p.name or p.name.endswith((".tmp", ".part"))]


# --------------------------------------------------------------------------------------------- edits lost


def test_existing_recipe_is_not_replaced(tmp_path: Path):
    src = _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    hand = out / "a.recipe.json"
    hand.write_text('{"evs": [0.5], "note": "edited by hand"}\n')
    _one_error(_cli("render", src, "--ev", "1", "--save-recipe", "-o", f"{out}/"), "a.recipe.json", "exists")
    assert hand.read_text() == '{"evs": [0.5], "note": "edited by hand"}\n' and not (out / "a.jpg").exists()
    # --skip-existing writes the missing photo and leaves the recipe alone
    assert _cli("render", src, "--ev", "1", "--save-recipe", "-o", f"{out}/", "--skip-existing").exit_code == 0
    assert (out / "a.jpg").exists() and "edited by hand" in hand.read_text()


def test_two_photos_one_recipe_name_is_refused(tmp_path: Path):
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "a.png", seed=1)
    out = tmp_path / "out"
    _one_error(_cli("render", tmp_path / "in", "--ev", "1", "--save-recipe", "-o", out), "a.jpg", "a.png",
               "a.recipe.json")
    assert not out.exists()  # refused before anything was written
    res = _cli("render", tmp_path / "in", "--ev", "1", "-o", out)  # without recipes both are fine
    assert res.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["a.jpg", "a.png"]


def test_render_never_rewrites_its_input_recipe(tmp_path: Path):
    src = _photo(tmp_path / "x.jpg")
    out = tmp_path / "out"
    out.mkdir()
    rec = out / "x.recipe.json"
    Recipe.from_evs([1.0, 2.0]).save(rec)
    before = rec.read_bytes()
    _one_error(_cli("render", src, "--recipe", rec, "--strength", "0.5", "--save-recipe", "-o", f"{out}/"),
               "x.recipe.json", "input")
    assert rec.read_bytes() == before and not (out / "x.jpg").exists()


def test_recipe_write_failure_is_completed_by_skip_existing(tmp_path: Path, monkeypatch):
    src = _photo(tmp_path / "a.jpg")
    out = tmp_path / "out"
    real_save = Recipe.save

    def failing_save(self, path, **kw):
        raise DeepExposureError(f"{path}: cannot write recipe (disk full)")

    monkeypatch.setattr(Recipe, "save", failing_save)
    _one_error(_cli("render", src, "--ev", "1", "--save-recipe", "-o", f"{out}/"), "disk full")
    photo_bytes = (out / "a.jpg").read_bytes()  # the photo got written, its recipe not
    monkeypatch.setattr(Recipe, "save", real_save)
    res = _cli("render", src, "--ev", "1", "--save-recipe", "-o", f"{out}/", "--skip-existing")
    assert res.exit_code == 0, res.output
    assert Recipe.load(out / "a.recipe.json").evs == [1.0]
    assert (out / "a.jpg").read_bytes() == photo_bytes  # the photo was left as it was
    res = _cli("render", src, "--ev", "1", "--save-recipe", "-o", f"{out}/", "--skip-existing")
    assert res.exit_code == 0 and "1 skipped" in res.stderr  # now both exist: skipped


# --------------------------------------------------------------------------------------------- tracebacks


@pytest.mark.parametrize("command", ["enhance", "render"])
@pytest.mark.parametrize("where", ["input", "output"])
def test_symlink_loop(tmp_path: Path, command: str, where: str):
    src = _photo(tmp_path / "a.jpg")
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    args = [command, src if where == "output" else loop, "-o", f"{loop}/sub/" if where == "output" else tmp_path / "o"]
    if command == "render":
        args += ["--ev", "1"]
    _one_error(_cli(*args), "loop")


def test_strength_nan(tmp_path: Path):
    src = _photo(tmp_path / "a.jpg")
    for cmd in (["enhance"], ["render", "--ev", "1"]):
        _one_error(_cli(*cmd, src, "--strength", "nan", "-o", tmp_path / "o.jpg"), "--strength")
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("fmt", ["onnx", "pt"])
@pytest.mark.parametrize("device", ["bogus", "cuda", "cuda:99"])
def test_bad_device(tmp_path: Path, device: str, fmt: str):
    """The shipped .onnx (ONNX Runtime providers) and its .pt (torch devices) refuse a device they cannot use."""
    import onnxruntime
    import torch

    from deepexposure.inference.loader import default_model_path

    has_cuda = torch.cuda.is_available() if fmt == "pt" else "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and has_cuda:
        pytest.skip("CUDA is present here")
    src = _photo(tmp_path / "a.jpg")
    _one_error(_cli("enhance", src, "--device", device, "--model", default_model_path(fmt), "-o", tmp_path / "o.jpg"),
               device)


def test_policy_with_a_badly_typed_config(tmp_path: Path):
    import torch

    from deepexposure.inference.loader import default_model_path

    d = torch.load(default_model_path("pt"), map_location="cpu", weights_only=True)
    d["config"]["segments"] = "six"
    bad = tmp_path / "bad.pt"
    torch.save(d, bad)
    src = _photo(tmp_path / "a.jpg")
    _one_error(_cli("enhance", src, "--model", bad, "-o", tmp_path / "o.jpg"), "segments", "six")
    d["config"]["segments"] = 6
    d["config"]["segmentation"] = {"scale": "large"}
    torch.save(d, bad)
    _one_error(_cli("enhance", src, "--model", bad, "-o", tmp_path / "o.jpg"), "scale")


def test_train_without_the_training_extra(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # "not installed": import raises ImportError
    _photo(tmp_path / "in" / "a.jpg")
    _one_error(_cli("train", "--inputs", tmp_path / "in", "--experts", tmp_path / "in", "--out", tmp_path / "run",
                    "--steps", "1"), "deepexposure[train]")
    assert not (tmp_path / "run").exists()


def _write_or_die(job: Job) -> None:
    """Batch job for the worker-death test: the job of ``die.jpg`` kills its own worker process."""
    if job.src.name == "die.jpg":
        os.kill(os.getpid(), signal.SIGKILL)
    job.dst.parent.mkdir(parents=True, exist_ok=True)
    job.dst.write_bytes(job.src.read_bytes())


def test_killed_worker_is_counted_and_the_rest_finish(tmp_path: Path, capsys):
    jobs = [Job(tmp_path / f"{n}.jpg", tmp_path / "out" / f"{n}.jpg") for n in ("a", "b", "die", "c", "d", "e")]
    for job in jobs:
        job.src.write_bytes(b"x")
    result = run_batch(jobs, _write_or_die, workers=2, progress=False)
    assert sorted(p.name for p in result.done) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert [(p.name, "worker" in msg) for p, msg in result.failed] == [("die.jpg", True)]
    with pytest.raises(DeepExposureError, match="1 of 6"):
        report(result, verb="done")
    assert "5 done, 1 failed" in capsys.readouterr().err  # the summary is printed


def test_python_api_rejects_empty_and_0_255_float_images():
    from deepexposure.inference.enhance import Enhancer

    enhancer = Enhancer()
    with pytest.raises(ValueError, match="no pixels"):
        enhancer.enhance(np.zeros((0, 0, 3), np.float32))
    with pytest.raises(ValueError, match="255"):
        enhancer.enhance(np.full((32, 32, 3), 120.0, np.float32))
    out, _ = enhancer.enhance(np.full((32, 32, 3), 120 / 255, np.float32))  # [0, 1] floats still work
    assert out.shape == (32, 32, 3)


# --------------------------------------------------------------------------------- processes and files


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find child processes")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_parent_dies(tmp_path: Path, sig):
    for i in range(60):
        _photo(tmp_path / "in" / f"p{i:02d}.png", seed=i, size=(480, 640))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "deepexposure", "render", str(tmp_path / "in"), "-o", str(out),
                             "--ev", "-1", "--ev", "1", "--ev", "2", "-j", "2"],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: set[int] = set()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until both workers are busy writing
            kids |= _children(proc.pid)
            if len(kids) >= 2 and out.is_dir() and len(list(out.iterdir())) >= 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed: make it longer"
            time.sleep(0.05)
        kids |= _children(proc.pid)
        assert proc.poll() is None, "the run ended before it could be killed: make it longer"
        os.kill(proc.pid, sig)
        proc.wait(10)
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        survivors = [k for k in kids if _alive(k)]
        assert not survivors, f"alive 5 s after the parent died: {survivors}"
        n = len(list(out.iterdir()))
        time.sleep(0.5)
        assert len(list(out.iterdir())) == n < 60  # nothing writes any more
    finally:  # never leave a process behind, even when the test fails
        for k in [k for k in kids | _children(proc.pid) | {proc.pid} if _alive(k)]:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass


_KILLED_WRITE = """
import os, signal, sys
from deepexposure.atomic import atomic_write
def half(fh):
    fh.write(b"half a photo")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
atomic_write(sys.argv[1], half)
"""


def test_a_killed_write_leaves_nothing_after_the_next_run(tmp_path: Path):
    src = _photo(tmp_path / "a.jpg")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(out / "a.jpg")], env=_env(), timeout=60)
    assert res.returncode == -signal.SIGKILL
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and is_temp_name(left[0])  # the killed write left its temporary file
    user = [out / ".a.tmp", out / ".notes.deepexposure-x.tmp", temp_path(out / "b.jpg").with_name(
        f".b.jpg.deepexposure-{'0' * 6}-1-0123abcd.tmp")]  # a user's files, and one of another host (pid 1)
    for p in user:
        p.write_text("mine")
    res = _cli("render", src, "--ev", "1", "-o", f"{out}/", "--skip-existing")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.jpg"] + [p.name for p in user])
    # a temporary of a live process of this host is left too (it may be writing right now)
    live = temp_path(out / "c.jpg").with_name(temp_path(out / "c.jpg").name.replace(f"-{os.getpid()}-", "-1-"))
    live.write_text("writing")
    assert clean_stale(out, force=True) == [] and live.exists()


def test_make_pairs_skips_bad_photos_and_builds_in_a_staging_folder(tmp_path: Path):
    srcs = tmp_path / "src"
    _photo(srcs / "good1.png", seed=1)
    _photo(srcs / "good2.png", seed=2)
    (srcs / "bad.jpg").write_bytes(b"not a photo")
    stale = temp_path(tmp_path / "dev").with_name(f".dev.deepexposure-{'0' * 6}-1-0123abcd.tmp")
    stale.mkdir()  # a staging folder left by a killed run of another host
    os.utime(stale, (0, 0))  # (old)
    out = tmp_path / "dev"
    res = _cli("make-pairs", srcs, "-o", out)
    assert res.exit_code == 0, res.output
    assert "bad.jpg" in res.stderr and "2 pairs" in res.stderr
    assert sorted(p.name for p in (out / "input").iterdir()) == ["good1.png", "good2.png"]
    assert "bad" in json.loads((out / "degradations.json").read_text())["skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev", "src"]  # the stale staging folder is gone
    # nothing readable: an error, and no folder left behind
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"junk")
    _one_error(_cli("make-pairs", only_bad, "-o", tmp_path / "dev2"), "could be read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev", "only_bad", "src"]


def test_recursive_run_leaves_its_output_folder_out(tmp_path: Path):
    _photo(tmp_path / "photos" / "a.jpg")
    _photo(tmp_path / "photos" / "sub" / "b.jpg", seed=1)
    out = tmp_path / "photos" / "fixed"
    for _ in range(2):
        res = _cli("render", tmp_path / "photos", "-r", "--ev", "1", "-o", out, "--skip-existing")
        assert res.exit_code == 0, res.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.jpg", "sub/b.jpg"]


# --------------------------------------------------------------------------------------- limits, messages


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header says w x h (the pixel data is a stub: the limit must refuse it before decoding)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_pixel_limit_message_quotes_the_limit_in_force(tmp_path: Path, monkeypatch):
    big = _png_header_only(tmp_path / "big.png", 15000, 15000)
    line = _one_error(_cli("render", big, "--ev", "1", "-o", tmp_path / "o.png", "--max-pixels", "100000000"),
                      "100,000,000")
    assert "178956970" not in line and "500000000" not in line
    huge = _png_header_only(tmp_path / "huge.png", 20000, 20000)  # above Pillow's own error level too
    line = _one_error(_cli("render", huge, "--ev", "1", "-o", tmp_path / "o.png", "--max-pixels", "300000000"),
                      "300,000,000")
    assert "178956970" not in line
    # default: sized from the free memory (here: pretend 4 GiB are free)
    from deepexposure.image import photo

    monkeypatch.setattr(photo, "available_memory", lambda: 4 * 2**30)
    limit = int(4 * 2**30 * 0.9 / photo.BYTES_PER_PIXEL)
    line = _one_error(_cli("render", big, "--ev", "1", "-o", tmp_path / "o.png"), f"{limit:,}", "memory")
    assert not (tmp_path / "o.png").exists()


def test_ev_out_of_range(tmp_path: Path):
    src = _photo(tmp_path / "a.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way
        _one_error(_cli("render", src, "--ev", "1000", "-o", tmp_path / "o.jpg"), "-10 to 10")
    rec = tmp_path / "r.json"
    rec.write_text('{"version": 1, "evs": [1000.0]}\n')
    _one_error(_cli("render", src, "--recipe", rec, "-o", tmp_path / "o.jpg"), "-10 to 10")
    assert not (tmp_path / "o.jpg").exists()


def test_warnings_are_one_readable_line(tmp_path: Path, capsys):
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(flat)
    res = _cli("render", flat, "--ev", "1", "--ev", "2", "--renderer", "local", "-o", tmp_path / "o.png")
    assert res.exit_code == 0, res.output
    assert "warning: only 1 segments found; using the first 1 of 2 EVs" in res.stderr.splitlines()
    assert "UserWarning" not in res.stderr and ".py:" not in res.stderr
    capsys.readouterr()
    with warnings.catch_warnings():  # (the CLI routed warnings above) a numpy warning is one line too
        warnings.simplefilter("always")
        np.float32(1e38) * np.float32(1e38)  # noqa: B018 - overflow RuntimeWarning
    text = capsys.readouterr().err
    assert re.fullmatch(r"warning: overflow encountered in [\w ]+ \(RuntimeWarning\)\n", text), text


def test_output_names(tmp_path: Path):
    src = _photo(tmp_path / "a.jpg")
    assert _cli("render", src, "--ev", "1", "-o", f"{tmp_path / 'x.png'}/").exit_code == 0
    assert (tmp_path / "x.png").is_dir() and (tmp_path / "x.png" / "a.jpg").is_file()  # trailing slash: folder
    _one_error(_cli("render", src, "--ev", "1", "-o", tmp_path / "fixed.gif"), "unsupported", ".gif")
    assert not (tmp_path / "fixed.gif").exists()
    assert _cli("render", src, "--ev", "1", "-o", tmp_path / "fixed.bmp").exit_code == 0
    assert Image.open(tmp_path / "fixed.bmp").format == "BMP"  # a file, not a folder


def test_bmp_input_folder_and_photos_only_in_subfolders(tmp_path: Path):
    bmps = tmp_path / "lol"
    for i in range(2):
        _photo(bmps / f"{i}.bmp", seed=i)
    res = _cli("render", bmps, "--ev", "1", "-o", tmp_path / "out", "--format", "png")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]
    nested = tmp_path / "nested"
    _photo(nested / "sub" / "a.jpg")
    _one_error(_cli("render", nested, "--ev", "1", "-o", tmp_path / "out2"), "use -r")


def test_single_photo_progress_and_where_outputs_went(tmp_path: Path):
    src = _photo(tmp_path / "a.jpg")
    res = _cli("render", src, "--ev", "1", "-o", tmp_path / "o.jpg")
    assert res.exit_code == 0
    assert "render" in res.stderr and "a.jpg" in res.stderr and "0/1" in res.stderr  # a progress line for one photo
    assert res.stderr.strip().splitlines()[-1].endswith(f"1 rendered; outputs in {tmp_path / 'o.jpg'}")


def test_readme_main_command_can_be_repeated(tmp_path: Path, monkeypatch):
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    command = block.splitlines()[0].split("&&")[-1].split()
    assert command[:3] == ["deepexposure", "enhance", "samples/"]
    for i in range(2):
        _photo(tmp_path / "samples" / f"s{i}.jpg", seed=i)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        res = _cli(*command[1:])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.jpg", "s1.jpg"]


def test_skipped_tests_say_why_in_one_line(tmp_path: Path):
    env = _env()
    env["DEEPEXPOSURE_SHARED_DATA"] = str(tmp_path / "no-such-folder")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_cli.py::test_pixel_cap"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in res.stdout.splitlines() if "tests skipped" in ln]
    assert len(lines) == 1, res.stdout
    assert str(tmp_path / "no-such-folder") in lines[0] and "DEEPEXPOSURE_SHARED_DATA" in lines[0]


def test_plan_jobs_refuses_a_folder_input_to_an_image_file_name(tmp_path: Path):
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "b.jpg")
    with pytest.raises(DeepExposureError, match="folder"):
        plan_jobs([tmp_path / "in"], tmp_path / "out.jpg")
    assert [j.dst.name for j in plan_jobs([tmp_path / "in"], f"{tmp_path / 'out.jpg'}/")] == ["a.jpg", "b.jpg"]
