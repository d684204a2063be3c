"""Hostile input, second round (issue 20, part B): train's resume horizon and config checks, an interrupted first
run, the editor's HTTP body limits and number checks, an unwritable --out-dir, and the cases of the hostile pass.

Each case is one ``error:`` line and exit 2 (HTTP: a 4xx with a JSON error), never a traceback or a stray file.
Training runs are tiny (a few steps of small networks on 40x50 photos)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import REPO
from deepexposure.cli import main

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
    from deepexposure.training.checkpoint import load_checkpoint
    from deepexposure.training.config import TrainConfig

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
