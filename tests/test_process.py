"""The command-line process's own speed mechanics (issue 23): the fast exit after a photo command, and the memory
paged in ahead of a photo. Run in fresh processes: both act on the process itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(kw.pop("env", os.environ), PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, **kw)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    y, x = np.mgrid[0:300, 0:400]
    img = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    path = tmp_path_factory.mktemp("p") / "p.jpg"
    Image.fromarray(img).save(path, quality=95)
    return path


def test_photo_commands_exit_fast_with_everything_written_and_said(photo, tmp_path):
    """``python -m deepexposure render/enhance`` end without the interpreter's teardown: the file is complete, the
    summary is on stderr (also through a pipe, which buffers), the exit codes are 0 and, for a failure, 2."""
    out = tmp_path / "o.jpg"
    for cmd in (["render", str(photo), "--ev", "1", "-o", str(out)], ["enhance", str(photo), "-o", str(out),
                                                                       "--overwrite"]):
        r = _run(["-m", "deepexposure", *cmd])
        assert r.returncode == 0, r.stderr
        assert "1 rendered" in r.stderr or "1 enhanced" in r.stderr
        with Image.open(out) as im:
            im.load()  # the whole file is there
            assert im.size == (400, 300)
    r = _run(["-m", "deepexposure", "render", str(tmp_path / "missing.jpg"), "--ev", "1", "-o", str(out)])
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error:")
    # the same through the console script's entry point, its output piped into another process
    code = "import sys; from deepexposure.apps.cli import run; sys.argv = ['deepexposure', *sys.argv[1:]]; run()"
    r = _run(["-c", code, "render", str(photo), "--ev", "0.5", "-o", str(tmp_path / "p.png"), "--overwrite"])
    assert r.returncode == 0 and "1 rendered" in r.stderr and (tmp_path / "p.png").stat().st_size > 0


def test_other_commands_and_library_calls_exit_normally():
    """Only after a photo command's summary does run() end the process at once: --version (and main() called
    from Python) raise SystemExit as usual, and atexit handlers run."""
    code = textwrap.dedent("""
        import atexit, sys
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        from deepexposure.apps.cli import run
        sys.argv = ["deepexposure", "--version"]
        try:
            run()
        except SystemExit as exc:
            print("SystemExit", exc.code, file=sys.stderr)
            raise
    """)
    r = _run(["-c", code])
    assert r.returncode == 0 and "SystemExit 0" in r.stderr and "atexit ran" in r.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and madvise")
def test_prefault_pages_in_what_the_next_allocations_use():
    """After prefault(n), an array of n/2 bytes is carved from pages that are already in: touching all of it
    faults in almost nothing, where the same array without it faults in every page."""
    code = textwrap.dedent("""
        import os, resource, sys
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # as the command line does: pages of 4 KB
        import numpy as np
        from deepexposure.memory import keep_freed_memory, prefault
        faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        assert keep_freed_memory()
        assert prefault(1 << 20) is None  # small: not worth a thread
        n = 96 << 20
        if sys.argv[1] == "prefault":
            t = prefault(n)
            if t is None:
                print("unsupported"); raise SystemExit
            t.join()
        f0 = faults()
        a = np.ones(n // 2, np.uint8)
        print(faults() - f0)
    """)
    with_it = _run(["-c", code, "prefault"]).stdout.strip()
    if with_it == "unsupported":
        pytest.skip("no glibc here")
    without = int(_run(["-c", code, "plain"]).stdout.strip())
    pages = (48 << 20) // 4096
    assert without > pages // 2  # the plain array is faulted in page by page (huge pages would be fewer)
    assert int(with_it) < pages // 20, (with_it, without)


def test_no_page_in_for_a_file_whose_header_claims_more_than_it_can_hold(tmp_path, monkeypatch):
    """A truncated PNG whose header says 12000 x 12000 is not paged in for (1 GB kept by the process until it
    exits) before read_photo refuses it; a real photo is."""
    import struct
    import zlib

    from deepexposure.apps import pipeline

    calls = []
    monkeypatch.setattr(pipeline, "prefault", lambda n: calls.append(n))
    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    liar = tmp_path / "liar.png"
    liar.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * 300)
    pipeline._prefault_for(liar, 250_000_000)
    assert calls == []
    real = tmp_path / "real.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(real)
    pipeline._prefault_for(real, 250_000_000)
    assert calls == [pipeline.PREFAULT_BYTES_PER_PIXEL * 600 * 800]
    pipeline._prefault_for(real, 1000)  # over the limit: read_photo refuses it, nothing paged in
    assert len(calls) == 1


def test_photo_commands_keep_numpy_blas_to_one_thread(photo, tmp_path):
    """A photo command's process runs NumPy's BLAS on one thread (it had a spinning thread per core, for nothing),
    unless the user set OPENBLAS_NUM_THREADS; other commands keep the default."""
    pytest.importorskip("threadpoolctl")
    code = textwrap.dedent("""
        import os, sys
        from deepexposure.apps.cli import run
        exit_now = os._exit
        def report(code):
            from threadpoolctl import threadpool_info
            print([p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"], flush=True)
            exit_now(code)
        os._exit = report
        sys.argv = ["deepexposure", *sys.argv[1:]]
        run()
    """)
    render = ["render", str(photo), "--ev", "1", "-o", str(tmp_path / "o.jpg"), "--overwrite"]
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    r = _run(["-c", code, *render], env=env)
    assert r.returncode == 0, r.stderr
    blas = eval(r.stdout.strip().splitlines()[-1])
    if not blas:
        pytest.skip("NumPy is not linked to OpenBLAS here")
    assert blas == [1] * len(blas)
    if (os.cpu_count() or 1) > 1:  # the user's own setting wins
        r = _run(["-c", code, *render], env=dict(env, OPENBLAS_NUM_THREADS="2"))
        assert eval(r.stdout.strip().splitlines()[-1]) == [2] * len(blas), r.stderr
