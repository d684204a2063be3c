"""``deepexposure enhance --cluster`` on a Dask LocalCluster started here: the outputs of a local run byte for byte,
a worker killed mid-run (its photos redone, none lost or twice), per-photo failures, --skip-existing, fsspec
URLs, and the message when Dask is not installed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deepexposure.apps.cli import main

distributed = pytest.importorskip("distributed")  # the cluster extra; CI installs it with the test extra

N_PHOTOS = 10


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """(folder of N_PHOTOS smooth badly exposed JPEGs and one truncated one, the outputs of a local run of them)."""
    root = tmp_path_factory.mktemp("photos")
    src = root / "in"
    src.mkdir()
    rng = np.random.default_rng(11)
    for i in range(N_PHOTOS):
        base = rng.random((6, 8, 3))
        img = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((640, 480), Image.BICUBIC)) / 255.0
        img = np.clip(img * (0.15 + 0.25 * (i % 4)), 0, 1)  # dark to bright
        Image.fromarray((img * 255).astype(np.uint8)).save(src / f"p{i:02d}.jpg", quality=92)
    good = (src / "p00.jpg").read_bytes()
    (src / "bad.jpg").write_bytes(good[: len(good) // 3])  # truncated: fails, the others go on
    ref = root / "ref"
    r = CliRunner().invoke(main, ["enhance", str(src), "-o", str(ref) + "/", "--recipe"])
    assert r.exit_code == 2 and f"{N_PHOTOS} enhanced, 1 failed" in r.output, r.output
    return src, ref


def _executing(dask_worker) -> list[str]:
    """Runs on a worker: the keys of the tasks it is executing now."""
    return [ts.key for ts in dask_worker.state.executing]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_cluster_outputs_equal_a_local_run_and_survive_a_killed_worker(photos, tmp_path):
    src, ref = photos
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        runs: dict = {}
        args = ["enhance", str(src), "-o", str(out) + "/", "--recipe", "--cluster", cluster.scheduler_address]
        t = threading.Thread(target=lambda: runs.update(r=CliRunner().invoke(main, args)))
        t.start()
        deadline = time.monotonic() + 120
        while len(list(out.glob("p*.jpg"))) < 2:  # workers are warm and busy: kill one in the middle of a photo
            assert time.monotonic() < deadline and t.is_alive(), runs
            time.sleep(0.05)
        pids = client.run(os.getpid)
        while True:  # a worker in the middle of a photo (not between two)
            running = client.run(_executing)
            victim = next((addr for addr, keys in running.items() if keys), None)
            if victim is not None:
                break
            assert time.monotonic() < deadline and t.is_alive(), runs
        os.kill(pids[victim], signal.SIGKILL)
        t.join(timeout=180)
        assert not t.is_alive()
        assert victim not in client.scheduler_info()["workers"]  # it did die mid-run (the nanny started another)
    r = runs["r"]
    assert r.exit_code == 2, r.output
    assert f"{N_PHOTOS} enhanced, 1 failed" in r.output, r.output  # every photo once; the bad one reported
    assert "failed: " in r.output and "bad.jpg" in r.output.split("failed: ", 1)[1]
    assert "Traceback" not in r.output
    got = _files(out)
    assert got == _files(ref)  # same names, same bytes, and no temporary file left behind
    # resumable: two outputs removed, the rerun writes those two and leaves the rest
    for name in ("p03.jpg", "p07.recipe.json"):
        (out / name).unlink()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c2:
        r = CliRunner().invoke(main, [*args[:-1], c2.scheduler_address, "--skip-existing"])
    assert f"2 enhanced, {N_PHOTOS - 2} skipped (existing), 1 failed" in r.output, r.output
    assert _files(out) == _files(ref)


def test_fsspec_urls_in_and_out(photos, tmp_path):
    """memory:// in and out (download, render, upload under a temporary name, move), file:// in, memory:// in and a
    local folder out, on an in-process cluster (memory:// is per process): the same bytes as the local run, no
    temporary object or file left."""
    import fsspec

    src, ref = photos
    mem = fsspec.filesystem("memory")
    for p in sorted(src.glob("p0[0-3].jpg")):
        mem.pipe(f"/de-in/{p.name}", p.read_bytes())
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        a = c.scheduler_address
        r = CliRunner().invoke(main, ["enhance", "memory://de-in", "-o", "memory://de-out", "--recipe", "--cluster", a])
        assert r.exit_code == 0 and "4 enhanced" in r.output, r.output
        got = {Path(p).name: mem.cat(p) for p in mem.find("/de-out")}
        assert got == {k: v for k, v in _files(ref).items() if k[:3] in ("p00", "p01", "p02", "p03")}
        r = CliRunner().invoke(main, ["enhance", "memory://de-in", "-o", "memory://de-out", "--recipe", "--cluster", a,
                                      "--skip-existing"])
        assert "0 enhanced, 4 skipped (existing)" in r.output, r.output
        r = CliRunner().invoke(main, ["enhance", "memory://de-in", "-o", "memory://de-out", "--cluster", a])
        assert r.exit_code == 2 and "exists (pass --overwrite or --skip-existing)" in r.output, r.output
        r = CliRunner().invoke(main, ["enhance", src.as_uri() + "/p05.jpg", "-o", "memory://de-one/x.png", "--cluster", a])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(main, ["enhance", "memory://de-in", "-o", str(tmp_path / "back") + "/", "--cluster", a])
        assert r.exit_code == 0 and "4 enhanced" in r.output, r.output  # remote in, local out
        assert _files(tmp_path / "back") == {k: v for k, v in got.items() if k.endswith(".jpg")}
    assert mem.ls("/de-one", detail=False) == ["/de-one/x.png"]
    mem.rm("/de-in", recursive=True)
    mem.rm("/de-out", recursive=True)
    mem.rm("/de-one", recursive=True)


def test_without_dask_one_line_and_nothing_done(photos, tmp_path, monkeypatch):
    src, _ = photos
    for name in ("distributed", "dask"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as without the extra
    r = CliRunner().invoke(main, ["enhance", str(src), "-o", str(tmp_path / "o") + "/", "--cluster", "tcp://x:8786"])
    assert r.exit_code == 2
    assert r.output.strip() == ("error: --cluster needs the cluster extra (Dask distributed is not installed): "
                                "pip install 'deepexposure[cluster]'")
    assert not (tmp_path / "o").exists()
