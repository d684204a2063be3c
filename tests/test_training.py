"""Training: parameters move, reproducibility (seed, resume), NaN handling, CLI guards (several processes:
test_distributed.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepexposure.errors import ConfigError
from deepexposure.learning.checkpoint import load_checkpoint
from deepexposure.learning.config import TrainConfig
from deepexposure.learning.dataset import TrainData, segment_all
from deepexposure.learning.policy import Policy
from deepexposure.learning.trainer import Trainer, TrainingError


def _data(n: int = 16) -> TrainData:
    rng = np.random.default_rng(0)
    base = rng.random((n, 8, 8, 3)).astype(np.float32)
    big = np.kron(base, np.ones((1, 8, 8, 1), np.float32))  # blocky 64x64 images: a few segments each
    dark = np.clip(big * 0.25, 0, 1).astype(np.float32)
    cfg = TrainConfig()
    cfg.rl.segments = 3
    return TrainData(dark, segment_all(dark, cfg.segmentation()), big)


def _cfg(variant: str = "I", steps: int = 6) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model.width = 8
    cfg.model.critic_width = 8
    cfg.model.hidden = 16
    cfg.rl.variant = variant
    cfg.rl.segments = 3
    cfg.rl.batch_size = 4
    cfg.rl.episodes_per_task = 2
    cfg.rl.critic_warmup = 2
    cfg.rl.warmup_n_critic = 2
    cfg.rl.n_critic = 1
    cfg.run.steps = steps
    cfg.run.threads = 1
    cfg.run.checkpoint_every = 3
    cfg.optim.lr_actor = 1e-3
    return cfg


def _params(t: Trainer) -> dict[str, torch.Tensor]:
    nets = {"actor": t.actor, "critic": t.critic, "value": t.value}
    return {f"{n}.{k}": v.detach().clone() for n, net in nets.items() if net is not None
            for k, v in net.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("variant", ["I", "II"])
def test_training_changes_parameters_and_same_seed_is_identical(tmp_path, variant):
    data = _data()
    t1 = Trainer(_cfg(variant), data, tmp_path / "a", tensorboard=False, progress=False)
    before = _params(t1)
    stats = t1.train(steps=4)
    after = _params(t1)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # a WGAN critic's hidden biases may get exactly zero gradient (a unit in the same linear region for every
    # real and fake sample cancels between the two means), so require most tensors of every network to move
    for net in ("actor", "critic", "value") if variant == "I" else ("actor", "critic"):
        keys = [k for k in before if k.startswith(net + ".")]
        assert sum(k in changed for k in keys) >= 0.75 * len(keys), (net, sorted(set(keys) - changed))
    assert all(k in changed for k in before if k.startswith("actor."))
    assert all(np.isfinite(v) for v in stats.values())
    t2 = Trainer(_cfg(variant), data, tmp_path / "b", tensorboard=False, progress=False)
    t2.train(steps=4)
    _assert_same(after, _params(t2))
    assert (t1.value is None) == (variant == "II")


def test_resume_equals_uninterrupted(tmp_path):
    data = _data()
    full = Trainer(_cfg(), data, tmp_path / "full", tensorboard=False, progress=False)
    full.train(steps=6)
    part = Trainer(_cfg(), data, tmp_path / "part", tensorboard=False, progress=False)
    part.train(steps=3)
    torch.manual_seed(12345)  # disturb global RNGs: the resumed run must not depend on them
    np.random.seed(5)
    resumed = Trainer.resume(tmp_path / "part", data, tensorboard=False, progress=False)
    assert resumed.step == 3
    resumed.train(steps=6)
    _assert_same(_params(full), _params(resumed))
    a, b = full.opt_actor.state_dict()["state"], resumed.opt_actor.state_dict()["state"]
    for k in a:
        assert torch.equal(a[k]["exp_avg"], b[k]["exp_avg"])
    ck = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert ck["step"] == 6 and ck["config"]["rl"]["variant"] == "I"


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    data = _data()
    t = Trainer(_cfg(), data, tmp_path / "run", tensorboard=False, progress=False)
    t.train(steps=3)  # checkpoint at step 3
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    t.inputs[:] = float("nan")
    with pytest.raises(TrainingError, match="non-finite"):
        t.train(steps=6)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == good
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3


def test_policy_from_run_predicts_like_the_actor(tmp_path):
    data = _data()
    t = Trainer(_cfg(), data, tmp_path / "run", tensorboard=False, progress=False)
    t.train(steps=3)
    pol = Policy.load(tmp_path / "run" / "policy.pt")
    assert pol.config["segments"] == 3 and pol.config["variant"] == "I"
    assert pol.config["segmentation"]["max_segments"] == 3
    from deepexposure.learning.env import masks_tensor, run_episode

    x = torch.from_numpy(data.inputs[:2]).permute(0, 3, 1, 2)
    evs, _ = run_episode(t.actor, x, masks_tensor(torch.from_numpy(data.labels[:2]).long(), 3))
    n = int(data.labels[0].max()) + 1
    np.testing.assert_allclose(pol.predict(data.inputs[0], data.labels[0]), evs[0, :n].numpy(), atol=1e-6)


def test_cli_refuses_non_empty_out_and_bad_data(tmp_path):
    from deepexposure.apps.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "x").write_text("x")
    r = CliRunner().invoke(main, ["train", "--out", str(out), "--inputs", str(tmp_path), "--experts", str(tmp_path)])
    assert r.exit_code == 2 and "not empty" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "new"), "--inputs", str(empty),
                                  "--experts", str(empty)])
    assert r.exit_code == 2 and "error:" in r.output
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "new2"), "--resume", "--inputs", str(empty)])
    assert r.exit_code == 2 and "nothing to resume" in r.output


@pytest.mark.slow
def test_cli_trains_a_tiny_run_and_resumes(tmp_path):
    from PIL import Image

    from deepexposure.apps.cli import main

    rng = np.random.default_rng(1)
    for name, scale in (("inputs", 60), ("experts", 255)):
        d = tmp_path / name
        d.mkdir()
        for i in range(3):
            arr = (rng.random((40, 50, 3)) * scale).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i}.png")
    (tmp_path / "inputs" / "broken.jpg").write_bytes(b"not a photo")  # reported and skipped
    out = tmp_path / "runs" / "tiny"
    _cfg("II", 2).save(tmp_path / "small.json")
    args = ["train", "--inputs", str(tmp_path / "inputs"), "--experts", str(tmp_path / "experts"),
            "--out", str(out), "--steps", "2", "--segments", "2", "--variant", "II",
            "--config", str(tmp_path / "small.json")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    pol = Policy.load(out / "policy.pt")
    assert pol.config["variant"] == "II" and pol.config["segments"] == 2
    assert (out / "config.json").is_file() and (out / "tb").is_dir()
    assert pol.config["paired_render"] == "local" and not pol.arch["global_features"]  # defaults
    out2 = tmp_path / "runs" / "tiny2"
    r = CliRunner().invoke(main, [*args[:6], str(out2), *args[7:], "--global-features", "--paired-render", "both"])
    assert r.exit_code == 0, r.output
    pol2 = Policy.load(out2 / "policy.pt")
    assert pol2.arch["global_features"] and pol2.config["paired_render"] == "both"
    saved = TrainConfig.load(out2 / "config.json")
    assert saved.model.global_features and saved.rl.paired_render == "both"
    r = CliRunner().invoke(main, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2


def _paired_data(n: int = 16) -> TrainData:
    """Blocky photos darkened by exactly -2 EV (color.apply_ev), with the originals as known targets."""
    from deepexposure.image.color import apply_ev

    rng = np.random.default_rng(1)
    base = 0.2 + 0.6 * rng.random((n, 8, 8, 3)).astype(np.float32)  # no clipping at +2 EV from the dark copy
    big = np.kron(base, np.ones((1, 8, 8, 1), np.float32))
    dark = apply_ev(big, -2.0).astype(np.float32)
    cfg = TrainConfig()
    cfg.rl.segments = 3
    has = np.ones(n, bool)
    has[::4] = False  # a quarter without target: those episodes get the adversarial reward only
    return TrainData(dark, segment_all(dark, cfg.segmentation()), big, big.copy(), has)


def test_paired_term_is_the_final_image_mse_and_ignores_unknown_targets(tmp_path):
    from deepexposure.learning.env import masks_tensor
    from deepexposure.learning.workers import compute_gradients

    data = _paired_data(4)
    torch.manual_seed(0)
    t = Trainer(_cfg(), data, tmp_path, tensorboard=False, progress=False)
    x, lab, y, w = t._batch(np.arange(4), np.zeros(4, bool))
    m = masks_tensor(lab, 3)
    kw = {"variant": "I", "gamma": 0.99, "ou_theta": 0.015, "ou_sigma": 0.03, "ou_mu": 0.0}
    r = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], y, w, paired_weight=5.0, **kw)
    direct = (((r.finals - y) ** 2).mean(dim=(1, 2, 3)) * w).sum()
    assert r.stats["paired_mse"] == pytest.approx(float(direct), rel=1e-5)
    assert float(direct) > 0.01  # the -2 EV inputs are far from their targets
    # with no known target the weight changes nothing; with weight 0 the targets change nothing
    zero_w = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], y, torch.zeros(4),
                               paired_weight=5.0, **kw)
    plain = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], **kw)
    for a, b in zip(zero_w.actor_grads, plain.actor_grads, strict=True):
        assert torch.equal(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(r.actor_grads, plain.actor_grads, strict=True))


def test_paired_anchor_learns_the_inverse_exposure(tmp_path):
    """Inputs darkened by -2 EV: with the anchor the actor's EVs rise towards +2 and the MSE to the targets falls."""
    from deepexposure.learning.env import masks_tensor, run_episode

    data = _paired_data()
    cfg = _cfg(steps=60)
    cfg.rl.paired_weight = 50.0
    cfg.optim.lr_actor = 3e-3
    t = Trainer(cfg, data, tmp_path / "p", tensorboard=False, progress=False)
    x, lab, y, _ = t._batch(np.arange(16), np.zeros(16, bool))
    m = masks_tensor(lab, 3)

    def mse_and_ev():
        evs, final = run_episode(t.actor, x, m)
        return float(((final - y) ** 2).mean()), float(evs.mean())

    mse0, ev0 = mse_and_ev()
    t.train()
    mse1, ev1 = mse_and_ev()
    assert ev0 == pytest.approx(0.0, abs=1e-6)  # zero-initialised last layer: identity policy at the start
    assert ev1 > 1.0 and mse1 < 0.3 * mse0, (mse0, mse1, ev1)


def test_global_feature_actor_trains_and_is_saved_in_the_policy(tmp_path):
    cfg = _cfg()
    cfg.model.global_features = True
    t = Trainer(cfg, _data(), tmp_path / "run", tensorboard=False, progress=False)
    before = {k: v.clone() for k, v in t.actor.state_dict().items()}
    t.train(steps=2)
    assert any(not torch.equal(before[k], v) for k, v in t.actor.state_dict().items() if k.startswith("gmlp"))
    pol = Policy.load(tmp_path / "run" / "policy.pt")
    assert pol.arch["global_features"] is True and pol.actor.global_features


def test_fused_paired_term_is_the_preview_fusion_mse(tmp_path):
    from deepexposure.learning.env import fuse_evs_torch, masks_tensor
    from deepexposure.learning.workers import compute_gradients

    data = _paired_data(4)
    torch.manual_seed(0)
    t = Trainer(_cfg(), data, tmp_path, tensorboard=False, progress=False)
    torch.nn.init.normal_(t.actor.head[-1].weight, std=0.05)  # EVs away from 0
    x, lab, y, w = t._batch(np.arange(4), np.zeros(4, bool))
    m = masks_tensor(lab, 3)
    m[0, 2] = 0.0  # episode 0 has only two non-empty segments: its fusion must use two EVs
    m[0, 1] = torch.clamp(m[0, 1] + masks_tensor(lab, 3)[0, 2], max=1.0)
    kw = {"variant": "I", "gamma": 0.99, "ou_theta": 0.015, "ou_sigma": 0.03, "ou_mu": 0.0, "paired_weight": 5.0}
    r = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], y, w, paired_render="fusion", **kw)
    direct = [float(((fuse_evs_torch(x[i:i + 1], r.evs[i:i + 1, : (2 if i == 0 else 3)]) - y[i]) ** 2).mean())
              for i in range(4)]
    assert r.stats["paired_mse"] == pytest.approx(float(np.dot(direct, w.numpy())), rel=1e-5)
    local = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], y, w, **kw)
    both = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], y, w, paired_render="both", **kw)
    assert both.stats["paired_mse"] == pytest.approx(r.stats["paired_mse"] + local.stats["paired_mse"], rel=1e-5)
    plain = compute_gradients(t.actor, t.critic, t.value, x, m, [1, 2, 3, 4], y, w, **{**kw, "paired_weight": 0.0})
    # the objective is linear in its terms: both = local + fusion - (the adversarial part counted twice)
    for a, f, lo, p in zip(both.actor_grads, r.actor_grads, local.actor_grads, plain.actor_grads, strict=True):
        torch.testing.assert_close(a, f + lo - p, atol=1e-4, rtol=1e-4)
    assert any(not torch.allclose(f, lo) for f, lo in zip(r.actor_grads, local.actor_grads, strict=True))
    with pytest.raises(ConfigError, match="paired_render"):  # the config's own check, in Trainer
        cfg = _cfg()
        cfg.rl.paired_render = "global"
        Trainer(cfg, data, tmp_path / "x", tensorboard=False, progress=False)


def test_training_data_cache_round_trip_and_parallel_builds(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from deepexposure.learning.dataset import build_training_data

    rng = np.random.default_rng(2)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(photos / f"{i}.png")
    kw = {"synthetic": [photos], "experts": [photos], "copies": 2, "seed": 0, "progress": False,
          "segmentation": TrainConfig().segmentation(), "cache_dir": tmp_path / "cache"}
    with ThreadPoolExecutor(2) as ex:  # two builds of the same data at once: both succeed, one cache file
        a, b = list(ex.map(lambda _: build_training_data(**kw), range(2)))
    assert len(a.inputs) == 6 and a.has_target.all() and len(a.experts) == 3
    c = build_training_data(**kw)  # from the cache
    for x, y, z in ((a.inputs, b.inputs, c.inputs), (a.labels, b.labels, c.labels), (a.targets, b.targets, c.targets)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    assert [p.name for p in (tmp_path / "cache").glob("train-*")] == [next((tmp_path / "cache").glob("train-*")).name]
    assert not list((tmp_path / "cache").glob("*.tmp.npz"))


class _RecordingTrainer:
    """Stands in for Trainer in the CLI: records the config it is given and trains nothing."""

    configs: list[TrainConfig] = []

    def __init__(self, cfg: TrainConfig, data: TrainData, out, **kw) -> None:
        self.step = 0
        _RecordingTrainer.configs.append(cfg)

    @classmethod
    def resume(cls, out, data: TrainData, *, threads=None, **kw) -> _RecordingTrainer:
        return cls(TrainConfig.load(out / "config.json"), data, out)

    def train(self, minutes=None) -> None:
        pass


def test_cli_options_override_a_config_file_only_when_given(tmp_path, monkeypatch):
    from PIL import Image

    from deepexposure.apps.cli import main

    monkeypatch.setattr("deepexposure.learning.trainer.Trainer", _RecordingTrainer)
    _RecordingTrainer.configs = []
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(photos / f"{i}.png")
    cfg = _cfg("II")  # every field an option can set differs from the default
    cfg.run.steps, cfg.run.seed, cfg.run.threads = 7, 5, 3
    cfg.rl.paired_weight, cfg.rl.paired_render, cfg.model.global_features = 3.0, "both", True
    cfg.save(tmp_path / "cfg.json")
    base = ["train", "--synthetic-inputs", str(photos), "--experts", str(photos), "--config", str(tmp_path / "cfg.json")]

    r = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert _RecordingTrainer.configs[-1].to_dict() == cfg.to_dict()  # nothing given: the file wins, variant II too

    opts = ["--variant", "I", "--steps", "9", "--seed", "1", "--segments", "4", "--paired-weight", "0",
            "--paired-render", "fusion", "--no-global-features", "--threads", "2"]
    r = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b"), *opts])
    assert r.exit_code == 0, r.output
    got = _RecordingTrainer.configs[-1]
    assert (got.rl.variant, got.run.steps, got.run.seed, got.rl.segments, got.rl.paired_weight, got.rl.paired_render,
            got.model.global_features, got.run.threads) == ("I", 9, 1, 4, 0.0, "fusion", False, 2)
    assert got.model.width == cfg.model.width and got.rl.batch_size == cfg.rl.batch_size  # the rest from the file

    run = tmp_path / "run"  # --resume: options may repeat the run's settings, not change them
    run.mkdir()
    cfg.save(run / "config.json")
    (run / "checkpoint.pt").write_bytes(b"")
    resume = ["train", "--synthetic-inputs", str(photos), "--experts", str(photos), "--out", str(run), "--resume"]
    r = CliRunner().invoke(main, [*resume, "--variant", "I", "--steps", "9"])
    assert r.exit_code == 2 and "differ from it: rl.variant" in r.output, r.output
    assert "run.steps" not in r.output  # the horizon may change on resume
    r = CliRunner().invoke(main, [*resume, "--variant", "II", "--config", str(tmp_path / "cfg.json"), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert _RecordingTrainer.configs[-1].rl.variant == "II"


def test_training_data_cache_follows_the_files_in_the_folders(tmp_path):
    import os

    from PIL import Image

    from deepexposure.learning.dataset import build_training_data

    rng = np.random.default_rng(4)
    photos, experts, cache = tmp_path / "photos", tmp_path / "experts", tmp_path / "cache"
    photos.mkdir()
    experts.mkdir()

    def save(path) -> None:
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(path)

    for i in range(2):
        save(photos / f"{i}.png")
        save(experts / f"{i}.png")
    kw = {"inputs": [photos], "experts": [experts], "progress": False, "segmentation": TrainConfig().segmentation(),
          "cache_dir": cache}
    first = build_training_data(**kw)
    assert len(first.inputs) == 2 and len(list(cache.glob("train-*.npz"))) == 1
    again = build_training_data(**kw)  # nothing changed: the cached data, no new cache file
    np.testing.assert_array_equal(again.inputs, first.inputs)
    assert len(list(cache.glob("train-*.npz"))) == 1

    save(photos / "2.png")  # a photo added to the input folder
    added = build_training_data(**kw)
    assert len(added.inputs) == 3
    np.testing.assert_array_equal(added.inputs[:2], first.inputs)
    save(experts / "1.png")  # an expert photo replaced under the same name (new content, new mtime)
    st = (experts / "1.png").stat()
    os.utime(experts / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = build_training_data(**kw)
    assert len(changed.experts) == 2 and not np.array_equal(changed.experts[1], added.experts[1])
    np.testing.assert_array_equal(changed.experts[0], added.experts[0])
    (photos / "0.png").unlink()  # a photo removed
    assert len(build_training_data(**kw).inputs) == 2
    assert len(list(cache.glob("train-*.npz"))) == 4


def test_best_global_ev_agrees_with_the_evaluation_oracle(shared_data):
    """The batched torch search that labels training inputs finds the EV of evaluation.oracle_global_ev."""
    from deepexposure.evaluation.baselines import oracle_global_ev
    from deepexposure.image.color import apply_ev
    from deepexposure.image.io import read_photo
    from deepexposure.image.segmentation import make_preview
    from deepexposure.learning.trainer import best_global_ev

    paths = sorted((shared_data / "bsds500" / "val").glob("*.jpg"))[:6]
    clean = [make_preview(read_photo(p).pixels) for p in paths]
    shifts = [-2.3, -1.1, -0.4, 0.0, 0.7, 1.6]
    degraded = [apply_ev(c, s) for c, s in zip(clean, shifts, strict=True)]
    x = torch.from_numpy(np.stack(degraded)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(clean)).permute(0, 3, 1, 2).contiguous()
    got = best_global_ev(x, y).numpy()
    ref = [oracle_global_ev(d, c, long_edge=64) for d, c in zip(degraded, clean, strict=True)]
    np.testing.assert_allclose(got, ref, atol=0.02)
    assert np.corrcoef(got, [-s for s in shifts])[0, 1] > 0.95  # it undoes the shift (up to clipping)


def test_the_python_api_checks_the_config_as_the_cli_does(tmp_path):
    """A TrainConfig built in Python with a bad field is refused by Trainer itself (one ConfigError, no folder)."""
    import dataclasses

    from deepexposure.errors import ConfigError

    cfg = TrainConfig()
    bad = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, segments=0))
    with pytest.raises(ConfigError, match="rl.segments"):
        Trainer(bad, None, tmp_path / "run")  # the check comes before the data is touched
    assert not (tmp_path / "run").exists()
