"""Hostile input, second round (issue 20, part A): each case fails on the code before its fix.

Photos are tiny and made here; most cases run the CLI in-process (a traceback fails the test), the ones a user meets
only from a real process (a file size limit) run one.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepexposure.errors import PhotoError
from deepexposure.io import read_photo, write_photo
from test_hostile import _cli, _env, _photo, _temps


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
            f"from deepexposure.cli import main; sys.argv = ['deepexposure', 'enhance', {str(src)!r}, '-o', "
            f"{str(out) + '/'!r}, '--recipe']; main()")
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "cannot write" in res.stderr
    assert not (out / "a.jpg").exists() and _temps(out) == []
    assert _cli("enhance", src, "-o", f"{out}/", "--recipe", "--skip-existing").exit_code == 0
    assert read_photo(out / "a.jpg").pixels.shape == (240, 320, 3)
