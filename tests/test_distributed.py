"""Training on several processes (torch.distributed, gloo on CPU): same results as one process, resume with
another process count, and a lost process ends the run with one clear line instead of a hang."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from deepexposure.learning.checkpoint import load_checkpoint
from deepexposure.learning.config import TrainConfig
from test_training import _cfg as tiny_config

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _photos(folder: Path, n: int = 6) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        base = rng.random((4, 5, 3))
        img = np.kron(base, np.ones((8, 8, 1))) * (0.3 + 0.1 * i)  # blocky: a few segments each
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _config(path: Path, steps: int = 4) -> Path:
    """A tiny model; batch 10 in tasks of 2 episodes: 5 tasks, so 2 processes hold 3 and 2 (uneven on purpose,
    and summing per process first, as an all-reduce does, would round differently)."""
    cfg = tiny_config("I", steps)  # test_training's tiny model, with the batch and cadence of this test
    cfg.rl.batch_size = 10
    cfg.rl.n_critic = 2
    cfg.run.checkpoint_every = 1
    cfg.save(path)
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _torchrun(args: list[str], n: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
           "-m", "deepexposure", "train", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _assert_same_state(a: Path, b: Path) -> None:
    """Two checkpoints hold bit-identical networks and optimiser states at the same step."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"]
    for net in ("actor", "critic", "value"):
        assert ca[net].keys() == cb[net].keys()
        for k in ca[net]:
            assert torch.equal(ca[net][k], cb[net][k]), (net, k)
    for opt in ("opt_actor", "opt_critic", "opt_value"):
        for i, st in ca[opt]["state"].items():
            assert torch.equal(st["exp_avg_sq"], cb[opt]["state"][i]["exp_avg_sq"]), (opt, i)


@pytest.mark.slow
def test_one_and_two_processes_give_identical_runs_and_resume_across_process_counts(tmp_path):
    from deepexposure.apps.cli import main

    photos = _photos(tmp_path / "photos")
    cfg = _config(tmp_path / "cfg.json")
    data = ["--synthetic-inputs", str(photos), "--experts", str(photos), "--copies", "2", "--config", str(cfg)]
    # reference: one process, 4 steps
    r = CliRunner().invoke(main, ["train", *data, "--out", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    # two processes from scratch: bit-identical parameters and optimiser states after 4 steps
    p = _torchrun([*data, "--out", str(tmp_path / "two")])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "(2 processes)" in p.stderr
    _assert_same_state(tmp_path / "one" / "checkpoint.pt", tmp_path / "two" / "checkpoint.pt")
    assert sorted(x.name for x in (tmp_path / "two").iterdir()) == sorted(x.name for x in (tmp_path / "one").iterdir())
    # one process stopped after its first step (--minutes), resumed by two processes: the same run again
    r = CliRunner().invoke(main, ["train", *data, "--out", str(tmp_path / "mixed"), "--minutes", "1e-9"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(tmp_path / "mixed" / "checkpoint.pt")["step"] == 1
    p = _torchrun([*data, "--out", str(tmp_path / "mixed"), "--resume", "--threads", "1"])
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same_state(tmp_path / "one" / "checkpoint.pt", tmp_path / "mixed" / "checkpoint.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_lost_process_ends_the_run_with_one_clear_line(tmp_path, how):
    """Two processes started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT); process 1 is
    stopped (SIGSTOP: alive but silent, which torchrun cannot see) or killed after the first checkpoint: process 0
    must end within the --timeout with exit code 2 and one error line, keeping its last checkpoint."""
    photos = _photos(tmp_path / "photos")
    cfg = _config(tmp_path / "cfg.json", steps=100_000)
    out = tmp_path / "run"
    port = _free_port()
    args = [sys.executable, "-m", "deepexposure", "train", "--synthetic-inputs", str(photos), "--experts", str(photos),
            "--copies", "2", "--config", str(cfg), "--out", str(out), "--timeout", "4"]
    procs = []
    for rank in (0, 1):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.pt").exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-2000:]
            time.sleep(0.2)
        os.kill(procs[1].pid, signal.SIGSTOP if how == "stopped" else signal.SIGKILL)
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 2, err[-2000:]
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    if how == "stopped":
        assert "no answer from another training process within 4 s" in lines[0]
        assert 3.5 < waited < 30
    else:
        assert "connection to another training process was lost" in lines[0]
        assert waited < 20
    assert lines[0].startswith("error: process 0 of 2:")
    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 1  # the last checkpoint is intact


def test_workers_option_points_to_torchrun(tmp_path):
    from deepexposure.apps.cli import main

    r = CliRunner().invoke(main, ["train", "--synthetic-inputs", str(tmp_path), "--out", str(tmp_path / "r"),
                                  "--workers", "2"])
    assert r.exit_code == 2 and "torchrun --nproc-per-node N -m deepexposure train" in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_old_configs_with_workers_load_with_a_warning():
    d = TrainConfig().to_dict()
    d["run"]["workers"] = 2
    with pytest.warns(UserWarning, match="torchrun"):
        cfg = TrainConfig.from_dict(d)
    assert cfg.to_dict() == TrainConfig().to_dict()
