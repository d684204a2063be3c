"""Hostile input, second round (issue 20, part A): each case fails on the code before its fix.

Photos are tiny and made here; most cases run the CLI in-process (a traceback fails the test), the ones a user meets
only from a real process (a file size limit) run one.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepexposure.atomic import NAME_MAX, is_temp_name, temp_path
from deepexposure.errors import DataError, PhotoError
from deepexposure.image.io import read_photo, write_photo
from deepexposure.image.recipe import rle_decode
from test_hostile import _cli, _env, _one_error, _photo, _temps


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Files of this process cannot grow past ``limit`` bytes (a nearly full disk: a write stops short, then fails
    with EFBIG); SIGXFSZ ignored so the write fails instead of killing the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def _noise(h: int = 120, w: int = 160) -> np.ndarray:
    return np.random.default_rng(3).random((h, w, 3), dtype=np.float32)


# ------------------------------------------------------------------------------ 3. disk full: no truncated photo


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_short_write_leaves_no_truncated_photo(tmp_path: Path, suffix: str):
    """The last block of the encoder's output stops short (disk full): the write fails, nothing is left under the
    final name nor as a temporary (Pillow took a short write of its own to the file's descriptor for success)."""
    img = _noise()
    size = write_photo(tmp_path / f"full{suffix}", img).stat().st_size
    dst = tmp_path / "out" / f"cut{suffix}"
    dst.parent.mkdir()
    with _file_size_limit(size - 10), pytest.raises(PhotoError, match="cannot write"):
        write_photo(dst, img)
    assert list(dst.parent.iterdir()) == []


def test_enhance_on_a_full_disk_fails_and_a_rerun_redoes_it(tmp_path: Path):
    """``enhance --recipe`` with the disk full at the photo's last block: reported failed (exit 2), no photo, and a
    later ``--skip-existing`` run writes the photo instead of skipping a truncated one as done."""
    src = _photo(tmp_path / "in" / "a.jpg", size=(240, 320))
    full = tmp_path / "full"
    assert _cli("enhance", src, "-o", f"{full}/", "--recipe").exit_code == 0
    size = (full / "a.jpg").stat().st_size
    out = tmp_path / "out"
    code = (f"import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size - 10}, resource.RLIM_INFINITY)); "
            f"from deepexposure.apps.cli import main; sys.argv = ['deepexposure', 'enhance', {str(src)!r}, '-o', "
            f"{str(out) + '/'!r}, '--recipe']; main()")
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "cannot write" in res.stderr
    assert not (out / "a.jpg").exists() and _temps(out) == []
    assert _cli("enhance", src, "-o", f"{out}/", "--recipe", "--skip-existing").exit_code == 0
    assert read_photo(out / "a.jpg").pixels.shape == (240, 320, 3)


# ------------------------------------------------------------------------------ 4. file names of 216-255 bytes


@pytest.mark.parametrize("stem", ["a" * 251, "é" * 125, "日本" * 41 + "x"])
def test_names_up_to_255_bytes_are_written(tmp_path: Path, stem: str):
    """A legal name of up to 255 bytes is written (its temporary name once passed 255 bytes: ENAMETOOLONG)."""
    name = stem + ".png"
    assert 250 <= len(name.encode()) <= 255
    assert len(temp_path(tmp_path / name).name.encode()) <= NAME_MAX
    assert is_temp_name(temp_path(tmp_path / name).name)
    write_photo(tmp_path / name, _noise(8, 8))
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_enhance_long_name_in_a_folder_and_its_recipe(tmp_path: Path):
    """``enhance`` of a photo with a 250-byte name writes it; with ``--recipe`` the sidecar's name would pass 255
    bytes: refused before anything is written (not a photo without its recipe)."""
    src = _photo(tmp_path / "in" / ("b" * 246 + ".jpg"))
    assert _cli("enhance", src.parent, "-o", tmp_path / "out").exit_code == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [src.name]
    res = _cli("enhance", src.parent, "-o", tmp_path / "rec", "--recipe")
    _one_error(res, "recipe.json", "longer than the 255")
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").iterdir())


# ------------------------------------------------------------------------------ 5, 6. cluster URLs


def test_cluster_unknown_url_protocol_is_one_line(tmp_path: Path):
    pytest.importorskip("distributed")
    res = _cli("enhance", "nosuchproto://x/", "-o", f"{tmp_path / 'o'}/", "--cluster", "tcp://127.0.0.1:1")
    _one_error(res, "nosuchproto://x/", "unknown URL protocol nosuchproto://")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["in", "out"])
def test_cluster_s3_without_s3fs_says_what_to_install(tmp_path: Path, monkeypatch, where: str):
    """The README's ``s3://`` example with the cluster extra but no s3fs: one line naming the extra (which now
    installs s3fs), not fsspec's ImportError traceback."""
    pytest.importorskip("distributed")
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import fails, as without it
    src = _photo(tmp_path / "in" / "a.jpg")
    args = ("s3://bucket/in", "-o", f"{tmp_path / 'o'}/") if where == "in" else (src, "-o", "s3://bucket/out/")
    res = _cli("enhance", *args, "-r", "--cluster", "tcp://127.0.0.1:1")
    _one_error(res, "s3://bucket/", "s3fs is not installed", "pip install 'deepexposure[cluster]'")


def test_cluster_extra_installs_s3fs():
    from conftest import REPO

    line = next(ln for ln in (REPO / "pyproject.toml").read_text().splitlines() if ln.startswith("cluster = ["))
    assert '"s3fs' in line.split("#")[0]


# ------------------------------------------------------------------------------ 7, 10. hostile recipes


def _recipe_file(tmp_path: Path, src: Path, edit) -> Path:
    """The recipe ``render --save-recipe`` writes for ``src`` (local renderer), changed by ``edit(dict)``."""
    made = tmp_path / "made"
    assert _cli("render", src, "--ev", "-1", "--ev", "1", "--renderer", "local", "-o", f"{made}/",
                "--save-recipe").exit_code == 0
    d = json.loads(next(made.glob("*.recipe.json")).read_text())
    edit(d)
    path = tmp_path / "edited.recipe.json"
    path.write_text(json.dumps(d))
    return path


def test_recipe_declaring_huge_labels_is_refused_before_allocating(tmp_path: Path):
    """A 200-byte recipe declaring 60000 x 60000 labels (one run) made ``render`` spend 46 s and 14 GB first."""
    src = _photo(tmp_path / "a.jpg")
    rec = _recipe_file(tmp_path, src, lambda d: d.update(
        evs=[1.0], labels={"shape": [60000, 60000], "values": [0], "counts": [60000 * 60000]}))
    assert rec.stat().st_size < 1024
    res = _cli("render", src, "--recipe", rec, "-o", tmp_path / "o.jpg")
    _one_error(res, str(rec), "labels shape [60000, 60000]", "above the")
    assert not (tmp_path / "o.jpg").exists()
    with pytest.raises(DataError, match="above the"):
        rle_decode({"shape": [5000, 5000], "values": [0], "counts": [25_000_000]})


@pytest.mark.parametrize(("key", "value"), [("sigma", -1), ("sigma", 1e9), ("scale", "x"), ("max_segments", 0),
                                            ("max_segments", 2.5), ("min_size", True), ("scale", None)])
def test_recipe_segmentation_errors_name_the_recipe_and_key(tmp_path: Path, key: str, value):
    """``segmentation.sigma -1`` was reported against the photo (``a.jpg: ValueError: Sigma values ...``), and a
    string scale was a traceback: the error names the recipe file and the key."""
    src = _photo(tmp_path / "a.jpg")
    rec = _recipe_file(tmp_path, src, lambda d: d["segmentation"].update({key: value}))
    res = _cli("render", src, "--recipe", rec, "-o", tmp_path / "o.jpg")
    _one_error(res, f"{rec}: recipe segmentation.{key} must be")
    assert not (tmp_path / "o.jpg").exists()


# ------------------------------------------------------------------------------ 8. policy metadata


def _onnx_with_config(path: Path, **config) -> Path:
    """A copy of the shipped .onnx policy whose metadata ``config`` has ``config`` keys replaced."""
    onnx = pytest.importorskip("onnx")
    from deepexposure.inference.loader import default_model_path

    model = onnx.load(default_model_path())
    for prop in model.metadata_props:
        if prop.key == "config":
            prop.value = json.dumps({**json.loads(prop.value), **config})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("config", "needle"), [({"segments": 10**9}, "segments must be an integer from 1 to 256"),
                                                ({"segmentation": {"sigma": 1e12}}, "segmentation sigma")])
def test_onnx_metadata_asking_for_gigabytes_is_one_error(tmp_path: Path, config: dict, needle: str):
    """``segments = 10**9`` in an ONNX policy's metadata allocated 8 GB of masks before failing."""
    model = _onnx_with_config(tmp_path / "big.onnx", **config)
    res = _cli("enhance", _photo(tmp_path / "a.jpg"), "-o", tmp_path / "o.jpg", "--model", model)
    _one_error(res, str(model), needle)
    assert not (tmp_path / "o.jpg").exists()


def test_pt_policy_whose_arch_does_not_match_its_weights(tmp_path: Path):
    """A ``.pt`` whose arch says width 10**6 (tiny weights) built that actor before loading the weights; and its
    config's ``segments`` is checked as the ONNX one is."""
    torch = pytest.importorskip("torch")
    from deepexposure.learning.models import Actor
    from deepexposure.learning.policy import Policy

    arch = {"width": 8, "hidden": 16, "size": 64, "max_ev": 3.0, "in_channels": 8}
    Policy(Actor(**arch), arch, {"segments": 6, "max_ev": 3.0}, device="cpu").save(tmp_path / "p.pt")
    d = torch.load(tmp_path / "p.pt", weights_only=True)
    src = _photo(tmp_path / "a.jpg")
    for name, change, needle in (("wide.pt", ("arch", "width", 10**6), "does not match the actor architecture"),
                                 ("steps.pt", ("config", "segments", 10**9), "segments must be")):
        bad = {**d, change[0]: {**d[change[0]], change[1]: change[2]}}
        torch.save(bad, tmp_path / name)
        _one_error(_cli("enhance", src, "-o", tmp_path / "o.jpg", "--model", tmp_path / name), needle)
    assert not (tmp_path / "o.jpg").exists()


# ------------------------------------------------------------------------------ 11. own hostile pass


def _frames_file(path: Path, n: int = 3) -> Path:
    frames = [Image.fromarray((np.roll(_noise(24, 32), 5 * k, axis=1) * 255).astype(np.uint8)) for k in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("name", ["pages.tif", "anim.gif", "anim.webp", "anim.png"])
def test_multi_frame_files_are_refused_not_cut_to_their_first_frame(tmp_path: Path, name: str):
    """A 3-page TIFF or an animation was enhanced to its first frame without a word (the other frames lost)."""
    src = _frames_file(tmp_path / name)
    _one_error(_cli("enhance", src, "-o", tmp_path / "o.jpg"), str(src), "of 3 frames")
    assert not (tmp_path / "o.jpg").exists()


def test_single_photos_with_extra_images_are_still_read(tmp_path: Path):
    """Not refused: a JPEG with a multi-picture extra (MPO, as phones write) and a TIFF whose second page is a
    reduced-resolution thumbnail (NewSubfileType 1)."""
    tifffile = pytest.importorskip("tifffile")
    mpo = _frames_file(tmp_path / "phone.mpo", n=2)
    jpg = mpo.rename(tmp_path / "phone.jpg")
    with Image.open(jpg) as im:
        assert im.format == "MPO"
    tif = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(tif) as w:
        w.write((_noise(24, 32) * 255).astype(np.uint8), photometric="rgb")
        w.write((_noise(6, 8) * 255).astype(np.uint8), photometric="rgb", subfiletype=1)
    assert read_photo(jpg).pixels.shape == (24, 32, 3)
    assert read_photo(tif).pixels.shape == (24, 32, 3)


def test_overwrite_and_skip_existing_together_are_refused(tmp_path: Path):
    """``--overwrite --skip-existing``: the existing output was replaced (overwrite won without a word)."""
    src = _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    assert _cli("render", src, "--ev", "1", "-o", f"{out}/").exit_code == 0
    before = (out / "a.jpg").read_bytes()
    for cmd in (("render", src, "--ev", "-2"), ("enhance", src)):
        _one_error(_cli(*cmd, "-o", f"{out}/", "--overwrite", "--skip-existing"), "contradict")
    assert (out / "a.jpg").read_bytes() == before


@pytest.mark.parametrize("cmd", ["enhance", "make-pairs", "evaluate-out", "evaluate-pairs", "segment"])
def test_names_over_255_bytes_are_one_line(tmp_path: Path, cmd: str):
    """A path with a name the file system refuses (ENAMETOOLONG) was a traceback from a stat."""
    src = _photo(tmp_path / "in" / "input" / "a.jpg")
    _photo(tmp_path / "in" / "target" / "a.jpg")
    long = tmp_path / ("z" * 260)
    args = {"enhance": ("enhance", src, "-o", f"{long}.jpg"), "make-pairs": ("make-pairs", src.parent, "-o", long),
            "evaluate-out": ("evaluate", "--pairs", tmp_path / "in", "-m", "identity", "-o", long, "-q"),
            "evaluate-pairs": ("evaluate", "--pairs", long, "-o", tmp_path / "ev"),
            "segment": ("segment", src, "-o", f"{long}/")}[cmd]
    res = _cli(*args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "z" * 100 in res.stderr and ("long" in res.stderr or "255" in res.stderr), res.stderr


def test_failed_evaluation_leaves_no_half_written_report(tmp_path: Path):
    """An unreadable pair (0 bytes) stopped ``evaluate`` after the thumbnails of the pairs before it were written:
    OUT/thumbs was left half-filled. Now OUT is not created; an earlier report's thumbnails are kept."""
    pairs = tmp_path / "pairs"
    for stem in ("a", "b"):
        _photo(pairs / "input" / f"{stem}.jpg")
        _photo(pairs / "target" / f"{stem}.jpg", seed=1)
    (pairs / "input" / "c.jpg").write_bytes(b"")
    _photo(pairs / "target" / "c.jpg")
    _one_error(_cli("evaluate", "--pairs", pairs, "-m", "identity", "-o", tmp_path / "ev", "-q"), "c.jpg", "empty")
    assert not (tmp_path / "ev").exists()
    old = tmp_path / "old" / "thumbs" / "kept.jpg"
    _photo(old)
    _one_error(_cli("evaluate", "--pairs", pairs, "-m", "identity", "-o", tmp_path / "old", "-q"), "empty")
    assert sorted(p.name for p in old.parent.iterdir()) == ["kept.jpg"]


def test_make_pairs_from_a_folder_without_photos_names_it(tmp_path: Path):
    (tmp_path / "empty.jpg").mkdir()  # a folder named like a photo
    _one_error(_cli("make-pairs", tmp_path / "empty.jpg", "-o", tmp_path / "mp"), "no source photos found in",
               "empty.jpg")


@pytest.mark.parametrize("cmd", ["enhance", "render", "segment", "make-pairs", "evaluate"])
def test_empty_out_is_refused_not_the_working_folder(tmp_path: Path, monkeypatch, cmd: str):
    """``-o ""`` (an unset shell variable) wrote the outputs into the working folder."""
    src = _photo(tmp_path / "p" / "input" / "a.jpg")
    _photo(tmp_path / "p" / "target" / "a.jpg")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = {"enhance": ("enhance", src), "render": ("render", src, "--ev", "1"), "segment": ("segment", src),
            "make-pairs": ("make-pairs", src.parent),
            "evaluate": ("evaluate", "--pairs", tmp_path / "p", "-m", "identity", "-q")}[cmd]
    _one_error(_cli(*args, "-o", ""), "-o is empty")
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("blocked", ["a.jpg", "a.recipe.json"])
def test_a_folder_in_the_way_of_an_output_fails_before_anything_is_written(tmp_path: Path, blocked: str):
    """``enhance --recipe --overwrite`` with a folder named like the recipe wrote the photo, then failed on the
    recipe: a photo without its recipe was left (and --skip-existing would not redo it)."""
    src = _photo(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    (out / blocked).mkdir(parents=True)
    _one_error(_cli("enhance", src, "-o", f"{out}/", "--recipe", "--overwrite"), blocked, "folder is in the way")
    assert [p.name for p in out.iterdir()] == [blocked]


def test_cluster_missing_scheduler_file_is_named(tmp_path: Path):
    """``--cluster nosuch.json`` was reported as 'missing port number in address'."""
    pytest.importorskip("distributed")
    src = _photo(tmp_path / "in" / "a.jpg")
    _one_error(_cli("enhance", src, "-o", f"{tmp_path / 'o'}/", "--cluster", tmp_path / "nosuch.json"),
               "nosuch.json: no such scheduler file")
