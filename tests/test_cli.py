"""The CLI in-process (Click's CliRunner): render, segment, bad input -> one line + exit 2, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepexposure.apps.cli import main
from deepexposure.image.color import apply_ev
from deepexposure.image.io import read_photo, write_photo


@pytest.fixture()
def photo(tmp_path: Path, shared_data: Path) -> Path:
    """A small real photo with EXIF (DICM), copied to tmp."""
    src = shared_data / "dicm" / "02.jpg"
    dst = tmp_path / "in" / "photo.jpg"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    dst.chmod(0o644)
    return dst


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_commands():
    res = _run("--help")
    assert res.exit_code == 0
    for cmd in ("render", "segment", "enhance"):
        assert cmd in res.output


def test_render_fusion_writes_fused_photo(photo: Path, tmp_path: Path):
    out = tmp_path / "out.jpg"
    res = _run("render", photo, "--ev", "1", "--ev", "2", "-o", out)
    assert res.exit_code == 0, res.output
    src, got = read_photo(photo), read_photo(out)
    assert got.pixels.shape == src.pixels.shape
    assert got.pixels.mean() > src.pixels.mean() + 0.02  # positive EVs brighten a dark photo
    assert got.exif is not None  # metadata kept


def test_render_local_equal_evs_is_global_exposure(photo: Path, tmp_path: Path):
    out = tmp_path / "out.png"
    res = _run("render", photo, "--ev", "1", "--ev", "1", "--ev", "1", "--renderer", "local", "-o", out)
    assert res.exit_code == 0, res.output
    src = read_photo(photo).pixels
    want = apply_ev(src, 1.0)
    got = read_photo(out).pixels
    assert np.abs(got - want).max() <= 1.5 / 255


def test_render_folder_and_no_overwrite(photo: Path, tmp_path: Path):
    out = tmp_path / "outdir"
    assert _run("render", photo.parent, "--ev", "1", "-o", out).exit_code == 0
    written = out / "photo.jpg"
    before = written.read_bytes()
    res = _run("render", photo.parent, "--ev", "2", "-o", out)
    assert res.exit_code == 2 and "exists" in res.output
    assert written.read_bytes() == before
    assert _run("render", photo.parent, "--ev", "2", "-o", out, "--skip-existing").exit_code == 0
    assert written.read_bytes() == before
    assert _run("render", photo.parent, "--ev", "2", "-o", out, "--overwrite").exit_code == 0
    assert written.read_bytes() != before


def test_render_refuses_to_overwrite_input(photo: Path):
    before = photo.read_bytes()
    res = _run("render", photo, "--ev", "1", "-o", photo)
    assert res.exit_code == 2 and "overwrite" in res.output
    assert photo.read_bytes() == before


def test_segment_overlay(photo: Path, tmp_path: Path):
    out = tmp_path / "overlay.png"
    res = _run("segment", photo, "-o", out, "--segments", "5")
    assert res.exit_code == 0, res.output
    img = read_photo(out)
    assert img.pixels.shape == read_photo(photo).pixels.shape


def _bad_inputs(tmp: Path, shared: Path) -> dict[str, Path]:
    bad = {}
    bad["missing"] = tmp / "nope.jpg"
    (tmp / "adir.jpg").mkdir()
    bad["directory"] = tmp / "adir.jpg"
    (tmp / "text.jpg").write_text("this is not a photo\n")
    bad["text"] = tmp / "text.jpg"
    (tmp / "empty.jpg").write_bytes(b"")
    bad["zero-byte"] = tmp / "empty.jpg"
    data = (shared / "dicm" / "02.jpg").read_bytes()
    (tmp / "trunc.jpg").write_bytes(data[: len(data) // 3])
    bad["truncated-jpeg"] = tmp / "trunc.jpg"
    png = tmp / "full.png"
    write_photo(png, read_photo(shared / "pip_sample_photos" / "rocket.jpg"))
    pdata = png.read_bytes()
    (tmp / "trunc.png").write_bytes(pdata[: len(pdata) // 2])
    bad["truncated-png"] = tmp / "trunc.png"
    return bad


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "zero-byte", "truncated-jpeg", "truncated-png"])
def test_bad_input_is_one_line_exit_2(kind: str, tmp_path: Path, shared_data: Path):
    bad = _bad_inputs(tmp_path, shared_data)[kind]
    out = tmp_path / "result.jpg"
    res = _run("render", bad, "--ev", "1", "-o", out)
    assert res.exit_code == 2, (kind, res.output)
    assert "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("error:")
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith((".", "result")) or "tmp" in p.name]
    assert leftovers == []


def test_pixel_cap(photo: Path, tmp_path: Path):
    out = tmp_path / "o.jpg"
    res = _run("render", photo, "--ev", "1", "-o", out, "--max-pixels", "1000")
    assert res.exit_code == 2 and "pixels" in res.output
    assert not out.exists()


def test_render_needs_evs(photo: Path, tmp_path: Path):
    res = _run("render", photo, "-o", tmp_path / "o.jpg")
    assert res.exit_code == 2 and "--ev" in res.output


def test_one_failure_does_not_stop_the_batch(photo: Path, tmp_path: Path):
    (photo.parent / "broken.jpg").write_text("junk")
    out = tmp_path / "outdir"
    res = _run("render", photo.parent, "--ev", "1", "-o", out)
    assert res.exit_code == 2
    assert (out / "photo.jpg").exists() and not (out / "broken.jpg").exists()
    assert "1 failed" in res.output


def test_enhance_highlight_guard_switch(tmp_path: Path):
    """--no-highlight-guard gives the policy's raw EVs; the default lowers the sky's EV of dicm_34 (rolloff), and
    the saved recipe re-renders the saved photo either way."""
    import json

    src = Path(__file__).resolve().parents[1] / "samples" / "dicm_34.jpg"
    evs = {}
    for flag in ("--highlight-guard", "--no-highlight-guard"):
        out = tmp_path / flag.strip("-")
        res = _run("enhance", src, "-o", out, "--model", "paper", "--renderer", "rolloff", "--recipe", "--format", "png",
                   flag)
        assert res.exit_code == 0, res.output
        rec = out / "dicm_34.recipe.json"
        evs[flag] = json.loads(rec.read_text())["evs"]
        again = tmp_path / f"again-{flag.strip('-')}.png"
        assert _run("render", src, "--recipe", rec, "-o", again).exit_code == 0
        a, b = read_photo(out / "dicm_34.png").pixels, read_photo(again).pixels
        assert np.array_equal(a, b)
    guarded, raw = evs["--highlight-guard"], evs["--no-highlight-guard"]
    assert guarded != raw and all(g <= r + 1e-6 for g, r in zip(guarded, raw, strict=True))
