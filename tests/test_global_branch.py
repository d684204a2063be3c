"""The global-exposure branch of the actor, its statistics, its warm start and the learned-global baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepexposure.image.color import apply_ev, luminance
from deepexposure.learning.config import TrainConfig
from deepexposure.learning.dataset import TrainData, segment_all
from deepexposure.learning.env import masks_tensor, run_episode
from deepexposure.learning.learned_global import LearnedGlobal, fit_learned_global
from deepexposure.learning.models import EXPOSURE_FEATURES, Actor, exposure_features
from deepexposure.learning.policy import Policy
from deepexposure.learning.trainer import Trainer


def _slow_features(srgb: np.ndarray) -> np.ndarray:
    """exposure_features written out with numpy for one (H, W, 3) sRGB image (the reference)."""
    ly = np.log2(luminance(srgb).astype(np.float64) + 2.0**-12)
    t = np.clip((ly + 12) / 12, 0, 1).ravel()
    centres = np.linspace(0, 1, 24)
    hist = np.clip(1 - np.abs(t[:, None] - centres[None, :]) * 23, 0, None).sum(0) / t.size
    flat = np.sort(ly.ravel())
    pct = [flat[min(flat.size - 1, round(q * (flat.size - 1)))] / 4 for q in (0.01, 0.05, 0.1, 0.25, 0.5, 0.75,
                                                                                0.9, 0.95, 0.99)]
    mx = srgb.max(axis=2)
    frac = [(mx >= 250 / 255).mean(), (mx <= 5 / 255).mean()]
    h, w = ly.shape
    grid = [ly[i * h // 4:(i + 1) * h // 4, j * w // 4:(j + 1) * w // 4].mean() / 4 for i in range(4) for j in range(4)]
    return np.concatenate([hist, pct, frac, grid])


def _previews(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.9, (n, 8, 8, 3)).astype(np.float32)
    return np.kron(base, np.ones((1, 8, 8, 1), np.float32))


def test_exposure_features_match_a_slow_reference():
    x = _previews(3)
    x[0, :10] = 1.0  # some clipped white
    x[1, :5] = 0.0  # some crushed black
    got = exposure_features(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert got.shape == (3, EXPOSURE_FEATURES)
    for i in range(3):
        np.testing.assert_allclose(got[i], _slow_features(x[i]), atol=2e-4)


def test_global_branch_actor_starts_at_its_global_ev_and_round_trips(tmp_path):
    torch.manual_seed(0)
    actor = Actor(width=8, hidden=16, global_branch=True, residual_ev=1.0)
    x = torch.from_numpy(_previews(4)).permute(0, 3, 1, 2)
    lab = torch.from_numpy(segment_all(_previews(4), TrainConfig().segmentation()))
    evs, _ = run_episode(actor, x, masks_tensor(lab, 3))
    s = torch.cat([x, torch.zeros_like(x[:, :1]), x, torch.zeros_like(x[:, :1])], dim=1)
    g = actor.global_ev(s)
    # the residual head starts at zero: every segment gets the global EV (through the soft bound)
    expected = actor.max_ev * torch.tanh(g / actor.max_ev)
    torch.testing.assert_close(evs, expected[:, None].expand_as(evs), atol=1e-6, rtol=0)
    arch = {"width": 8, "hidden": 16, "size": 64, "max_ev": 3.0, "in_channels": 8, "global_branch": True,
            "residual_ev": 1.0}
    pol = Policy.from_actor(actor, arch, {"segments": 3})
    pol.save(tmp_path / "p.pt")
    again = Policy.load(tmp_path / "p.pt")
    assert again.model_id == pol.model_id and again.actor.global_branch


def _shift_data(n: int = 48) -> tuple[TrainData, np.ndarray]:
    clean = _previews(n, seed=1)
    shifts = np.random.default_rng(2).uniform(-2.0, 1.0, n).astype(np.float32)
    inputs = np.stack([apply_ev(c, s) for c, s in zip(clean, shifts, strict=True)]).astype(np.float32)
    cfg = TrainConfig()
    cfg.rl.segments = 3
    data = TrainData(inputs, segment_all(inputs, cfg.segmentation()), clean, clean, np.ones(n, bool))
    return data, shifts


def test_warm_start_fits_the_best_global_ev_and_train_writes_the_baseline(tmp_path):
    pytest.importorskip("sklearn")
    data, shifts = _shift_data()
    cfg = TrainConfig()
    cfg.model.width, cfg.model.critic_width, cfg.model.hidden = 8, 8, 16
    cfg.model.global_branch = True
    cfg.rl.segments, cfg.rl.batch_size, cfg.rl.episodes_per_task = 3, 4, 2
    cfg.rl.global_pretrain_steps = 400
    cfg.run.steps, cfg.run.threads = 1, 1
    t = Trainer(cfg, data, tmp_path / "run", tensorboard=False, progress=False)
    x = t.inputs
    s = torch.cat([x, torch.zeros_like(x[:, :1]), x, torch.zeros_like(x[:, :1])], dim=1)
    before = float((t.actor.global_ev(s).detach().numpy() + shifts).__abs__().mean())
    t.train()
    lg = LearnedGlobal.load(tmp_path / "run")  # fitted on the same data
    after = float((t.actor.global_ev(s).detach().numpy() + shifts).__abs__().mean())
    assert after < 0.5 * before and after < 0.4, (before, after)
    pred = lg.predict(data.inputs)
    assert np.corrcoef(pred, -shifts)[0, 1] > 0.8


def test_learned_global_save_load_and_refuses_foreign_files(tmp_path):
    pytest.importorskip("sklearn")
    from deepexposure.errors import ModelError

    data, shifts = _shift_data(40)
    lg = fit_learned_global(data.inputs, -shifts, seed=0)
    lg.save(tmp_path / "lg.pkl")
    again = LearnedGlobal.load(tmp_path / "lg.pkl")
    np.testing.assert_array_equal(again.predict(data.inputs), lg.predict(data.inputs))
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="cannot read"):
        LearnedGlobal.load(tmp_path / "bad.pkl")
    with pytest.raises(ModelError, match="no learned-global model"):
        LearnedGlobal.load(tmp_path / "missing")


def test_learned_global_method_in_evaluate(tmp_path):
    pytest.importorskip("sklearn")
    from deepexposure.evaluation.baselines import get_method

    data, shifts = _shift_data(40)
    fit_learned_global(data.inputs, -shifts, seed=0).save(tmp_path / "learned_global.pkl")
    m = get_method(f"learned-global:{tmp_path}", renderer="rolloff")
    img = apply_ev(_previews(1, seed=5)[0], -1.5)
    out = m(img)
    assert out.shape == img.shape and m.last_ev > 0  # a darkened photo is brightened
    assert m.name.endswith("[rolloff]")


def test_cli_make_pairs_family_reaches_the_files(tmp_path, shared_data):
    import json

    from click.testing import CliRunner

    from deepexposure.apps.cli import main

    src = shared_data / "bsds500" / "test"
    out = tmp_path / "fam"
    res = CliRunner().invoke(main, ["make-pairs", str(src), "--limit", "3", "--family", "noise", "-o", str(out),
                                    "--long-edge", "64"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "degradations.json").read_text())
    assert rec["config"]["always"] == ["noise"] and all(
        v["params"]["families"] == ["noise"] for v in rec["images"].values())
    from deepexposure.data import DegradeConfig

    assert DegradeConfig.from_dict(rec["config"]) == DegradeConfig.only("noise")


def test_episode_computes_exposure_features_once_with_the_same_evs(monkeypatch):
    """run_episode reads the global branch's statistics of the original once per episode, not once per step, and
    gets exactly the EVs of the per-step computation."""
    import deepexposure.learning.models as models

    torch.manual_seed(0)
    actor = Actor(width=8, hidden=16, global_branch=True, residual_ev=1.0).eval()
    x = torch.from_numpy(_previews(2)).permute(0, 3, 1, 2)
    labels = torch.from_numpy(np.kron(np.arange(4).reshape(1, 2, 2), np.ones((2, 32, 32), np.int64)))
    masks = masks_tensor(labels, 4)
    with torch.no_grad():
        per_step = []
        cur = x
        from deepexposure.learning.env import state, step

        for t in range(4):  # the per-step reference: features recomputed from each state
            e = actor(state(x, masks[:, t:t + 1], cur, t, 4))
            cur = step(x, cur, masks[:, t:t + 1], e)
            per_step.append(e)
        calls = []
        real = models.exposure_features
        monkeypatch.setattr(models, "exposure_features", lambda s: calls.append(1) or real(s))
        evs, final = run_episode(actor, x, masks)
    assert len(calls) == 1
    torch.testing.assert_close(evs, torch.stack(per_step, 1), rtol=0, atol=0)
    torch.testing.assert_close(final, cur, rtol=0, atol=0)
