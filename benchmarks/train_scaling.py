"""Training steps/s with 1 and 2 processes (torchrun, gloo), the reference measured in the same run.

Each configuration runs in fresh processes: the default model and batch (width 32, batch 8 in 2 tasks of 4
episodes, T = 6, n_critic 2, no warm-up phase) on synthetic 64x64 previews; 3 steps of warm-up, then ``--steps``
timed steps. Rows: 1 process with 1 thread (the reference), 1 process with 2 threads, 2 processes with 1 thread
each (``torchrun --nproc-per-node 2``). The ratio column is steps/s over the reference's.

Usage: ``python benchmarks/train_scaling.py [--steps 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(steps: int, threads: int, out: str) -> None:
    """Runs in each training process: time ``steps`` steps after a warm-up; rank 0 prints JSON."""
    import numpy as np

    from deepexposure.learning.config import TrainConfig
    from deepexposure.learning.dataset import TrainData, segment_all
    from deepexposure.learning.distributed import SINGLE, init_world, launched_by_torchrun
    from deepexposure.learning.trainer import Trainer

    world, device = (init_world("cpu") if launched_by_torchrun() else (SINGLE, "cpu"))
    cfg = TrainConfig()
    cfg.run.threads = threads
    cfg.rl.critic_warmup = 0
    cfg.run.steps = steps + 3
    cfg.run.checkpoint_every = 10**9
    rng = np.random.default_rng(0)
    big = np.kron(rng.random((64, 8, 8, 3)).astype(np.float32), np.ones((1, 8, 8, 1), np.float32))
    dark = np.clip(big * 0.3, 0, 1).astype(np.float32)
    data = TrainData(dark, segment_all(dark, cfg.segmentation()), big)
    t = Trainer(cfg, data, out, device=device, tensorboard=False, progress=False, world=world)
    for _ in range(3):
        t.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        t.train_step()
    dt = time.perf_counter() - t0
    world.close()
    if world.is_main:
        print(json.dumps({"steps_per_s": steps / dt}))


def _run(procs: int, threads: int, steps: int, out: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(threads)}
    me = [__file__, "--child", str(steps), str(threads), out]
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *me]
           if procs > 1 else [sys.executable, *me])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads([x for x in res.stdout.splitlines() if x.startswith("{")][-1])["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = [(p, th, _run(p, th, args.steps, f"{tmp}/r{p}{th}")) for p, th in ((1, 1), (1, 2), (2, 1))]
    ref = rows[0][2]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.steps} timed steps each")
    print("| processes | threads each | steps/s | ratio to 1 process x 1 thread |")
    print("|---|---|---|---|")
    for p, th, sps in rows:
        print(f"| {p} | {th} | {sps:.2f} | {sps / ref:.2f} |")


if __name__ == "__main__":
    main()
