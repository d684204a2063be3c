"""Photos/s of ``enhance --cluster`` with 1 and 2 Dask workers, the local run measured in the same run as reference.

A folder of ``--photos`` JPEGs of ``--megapixels`` MP (resized from a sample photo, slightly different exposures)
is enhanced with the shipped model and the fusion renderer:

* ``local -j 1`` (reference): :func:`deepexposure.apps.batch.run_batch` in this process;
* ``Dask, N workers``: a ``distributed.LocalCluster`` of N worker processes with 1 thread each, through
  :func:`deepexposure.apps.cluster.enhance_on_cluster` (the code path of ``deepexposure enhance --cluster``).

Every configuration is warmed up first (the model loaded in every worker), then timed on the whole folder.

Usage: ``python benchmarks/cluster.py [--photos 16] [--megapixels 2]``
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make_photos(folder: Path, n: int, mp: float) -> None:
    import cv2
    import numpy as np

    img = cv2.imread(str(REPO / "samples" / "dicm_34.jpg"))
    w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i:03d}.jpg"), np.clip(img * (0.6 + (0.05 * i) % 0.8), 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def _local(src: Path, out: Path) -> float:
    from deepexposure.apps.batch import plan_jobs, run_batch
    from deepexposure.apps.pipeline import enhance_file

    fn = functools.partial(enhance_file, renderer="fusion")
    run_batch(plan_jobs([src], str(out / "warm") + "/")[:1], fn, progress=False)  # model loaded
    jobs = plan_jobs([src], str(out / "timed") + "/")
    t0 = time.perf_counter()
    res = run_batch(jobs, fn, progress=False)
    dt = time.perf_counter() - t0
    assert len(res.done) == len(jobs), res.failed
    return len(jobs) / dt


def _dask(src: Path, out: Path, workers: int) -> float:
    import distributed

    from deepexposure.apps.cluster import enhance_on_cluster

    kw = {"renderer": "fusion", "strength": 1.0, "progress": False}
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        warm = out / "warm"
        warm.mkdir(parents=True)
        for i, p in enumerate(sorted(src.iterdir())[:workers]):
            (warm / f"w{i}.jpg").symlink_to(p)
        enhance_on_cluster([str(warm)], str(out / "warm_out") + "/", "", client=client, **kw)
        t0 = time.perf_counter()
        res, jobs = enhance_on_cluster([str(src)], str(out / "timed") + "/", "", client=client, **kw)
        dt = time.perf_counter() - t0
    assert len(res.done) == len(jobs), res.failed
    return len(jobs) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--megapixels", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        _make_photos(src, args.photos, args.megapixels)
        rows = [("local -j 1 (this process)", _local(src, Path(tmp) / "local"))]
        for n in (1, 2):
            rows.append((f"Dask, {n} worker{'s' if n > 1 else ''} x 1 thread", _dask(src, Path(tmp) / f"d{n}", n)))
    ref = rows[0][1]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.photos} photos of "
          f"{args.megapixels:g} MP, fusion renderer")
    print("| run | photos/s | s/photo | ratio to local -j 1 |")
    print("|---|---|---|---|")
    for name, pps in rows:
        print(f"| {name} | {pps:.2f} | {1 / pps:.2f} | {pps / ref:.2f} |")


if __name__ == "__main__":
    main()
