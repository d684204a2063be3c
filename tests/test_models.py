"""Networks: shapes, bounds, gradients; critic features; the WGAN gradient penalty; OU noise; Policy files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepexposure.errors import ModelError
from deepexposure.learning.models import (
    Actor,
    Critic,
    ValueNet,
    critic_features,
    global_features,
    gradient_penalty,
    soft_histogram,
)
from deepexposure.learning.noise import OUNoise
from deepexposure.learning.policy import Policy


@pytest.fixture
def batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(3, 8, 64, 64)


def _all_grads_finite_nonzero(net: torch.nn.Module) -> None:
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_actor_bounds_and_gradients(batch):
    torch.manual_seed(1)
    actor = Actor(max_ev=2.5)
    torch.nn.init.normal_(actor.head[-1].weight, std=10.0)  # saturate tanh on purpose
    out = actor(batch * 50)
    assert out.shape == (3,)
    assert out.abs().max() <= 2.5 and out.abs().max() > 2.0
    actor2 = Actor()
    torch.nn.init.normal_(actor2.head[-1].weight, std=0.1)
    actor2(batch).sum().backward()
    _all_grads_finite_nonzero(actor2)


def test_actor_starts_at_zero_ev(batch):
    assert torch.equal(Actor()(batch), torch.zeros(3))


def test_value_and_critic_shapes_and_gradients(batch):
    torch.manual_seed(2)
    v = ValueNet()
    out = v(batch)
    assert out.shape == (3,)
    out.sum().backward()
    _all_grads_finite_nonzero(v)
    c = Critic()
    img = batch[:, :3]
    score = c(img)
    assert score.shape == (3,)
    (score.sum() + gradient_penalty(c, img, torch.rand_like(img))).backward()
    _all_grads_finite_nonzero(c)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in c.modules())


def test_critic_features_known_answers():
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0] = 0.8  # constant red image: no contrast, known saturation and luma
    f = critic_features(x)
    assert f.shape == (1, 6, 16, 16)
    assert torch.allclose(f[:, 3], torch.zeros(1, 16, 16), atol=1e-6)
    expected_sat = np.std([0.8, 0.0, 0.0])
    assert torch.allclose(f[:, 4], torch.full((1, 16, 16), float(expected_sat)), atol=1e-5)
    assert torch.allclose(f[:, 5], torch.full((1, 16, 16), 0.2126 * 0.8), atol=1e-6)
    g = torch.full((1, 3, 16, 16), 0.5)
    g[..., 8] = 1.0  # a bright vertical line -> contrast there, |laplacian| = 2 * 0.5 next to it
    fg = critic_features(g)
    assert fg[0, 3, 4, 8] == pytest.approx(1.0, abs=1e-5) and fg[0, 3, 4, 7] == pytest.approx(0.5, abs=1e-5)
    assert fg[0, 3, 4, 2] == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_zero_for_unit_linear_critic():
    torch.manual_seed(3)
    real, fake = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    w = torch.randn(3 * 8 * 8, dtype=torch.float64)
    w = (w / w.norm()).float()
    gp = gradient_penalty(lambda x: x.flatten(1) @ w, real, fake)
    assert float(gp) == pytest.approx(0.0, abs=1e-10)
    gp2 = gradient_penalty(lambda x: x.flatten(1) @ (3 * w), real, fake)  # ||grad|| = 3 -> (3-1)^2
    assert float(gp2) == pytest.approx(4.0, rel=1e-5)


def test_ou_noise_reproducible_and_mean_reverting():
    a = OUNoise().path(50, torch.Generator().manual_seed(7))
    b = OUNoise().path(50, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    c = OUNoise().path(50, torch.Generator().manual_seed(8))
    assert not torch.equal(a, c)
    # mean reversion: from x0 = 1 with no noise the process decays as (1 - theta)^k
    ou = OUNoise(theta=0.1, sigma=0.0, x=0.0)
    ou.reset(1.0)
    path = ou.path(10, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(path.numpy(), 0.9 ** np.arange(1, 11), rtol=1e-6)
    # stationary statistics of many long paths: mean mu, variance sigma^2 / (1 - (1 - theta)^2)
    g = torch.Generator().manual_seed(1)
    ou = OUNoise(theta=0.2, sigma=0.03, mu=0.1)
    ou.reset()
    xs = ou.path(20000, g)[200:]
    assert float(xs.mean()) == pytest.approx(0.1, abs=0.01)
    assert float(xs.var()) == pytest.approx(0.03**2 / (1 - 0.8**2), rel=0.15)


def _policy(seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    actor = Actor(width=8, hidden=16, max_ev=3.0)
    torch.nn.init.normal_(actor.head[-1].weight, std=0.3)
    arch = {"width": 8, "hidden": 16, "size": 64, "max_ev": 3.0, "in_channels": 8}
    return Policy(actor, arch, {"segments": 4, "segmentation": {"max_segments": 4}}, device="cpu")


def test_policy_save_load_identical_actions(tmp_path):
    pol = _policy()
    rng = np.random.default_rng(0)
    preview = rng.random((64, 64, 3), dtype=np.float32)
    labels = np.zeros((64, 64), np.int32)
    labels[32:] = 1
    labels[:, 40:] = 2
    evs = pol.predict(preview, labels)
    assert evs.shape == (3,) and np.all(np.abs(evs) <= 3.0) and np.abs(evs).max() > 0
    path = pol.save(tmp_path / "p.pt")
    again = Policy.load(path)
    np.testing.assert_array_equal(again.predict(preview, labels), evs)
    assert again.model_id == pol.model_id and again.model_id != _policy(1).model_id
    assert again.config["segments"] == 4
    assert preview.dtype == np.float32 and labels.max() == 2  # inputs untouched


def test_policy_bad_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError):
        Policy.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError):
        Policy.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ModelError):
        Policy.load(other)


def test_soft_histogram_sums_to_one_and_keeps_the_masked_mean():
    torch.manual_seed(4)
    y = torch.rand(2, 1, 16, 16)
    mask = (torch.rand(2, 1, 16, 16) < 0.3).float()
    mask[1] = 0.0  # empty mask -> all-zero histogram, no division by zero
    h = soft_histogram(y, mask, bins=16)
    assert h.shape == (2, 16)
    assert float(h[0].sum()) == pytest.approx(1.0, abs=1e-5) and torch.equal(h[1], torch.zeros(16))
    centres = torch.linspace(0, 1, 16)
    masked_mean = float((y[0] * mask[0]).sum() / mask[0].sum())
    assert float((h[0] * centres).sum()) == pytest.approx(masked_mean, abs=1e-5)
    # slow reference: every value splits linearly between its two neighbouring bin centres
    ref = np.zeros(16)
    for v in y[0][mask[0] > 0].numpy().astype(np.float64):
        pos = v * 15
        lo = min(int(np.floor(pos)), 14)
        ref[lo] += 1 - (pos - lo)
        ref[lo + 1] += pos - lo
    np.testing.assert_allclose(h[0].numpy(), ref / ref.sum(), atol=1e-5)


def test_actor_with_global_features(batch, tmp_path):
    f = global_features(batch)
    assert f.shape == (3, 3 * 16 + 2)
    assert torch.allclose(f[:, 48], batch[:, 3].mean((1, 2))) and torch.allclose(f[:, 49], batch[:, 7, 0, 0])
    actor = Actor(width=8, hidden=16, global_features=True)
    assert torch.equal(actor(batch), torch.zeros(3))  # identity policy at the start, like the plain actor
    torch.manual_seed(5)
    torch.nn.init.normal_(actor.head[-1].weight, std=0.3)
    out = actor(batch)
    assert out.shape == (3,) and out.abs().max() <= 3.0
    # the histograms reach the output: a state differing only in its global brightness gets another EV
    brighter = batch.clone()
    brighter[:, :3] = (brighter[:, :3] * 0.5).clamp(0, 1)
    assert not torch.allclose(actor(brighter), out)
    out.sum().backward()
    _all_grads_finite_nonzero(actor)
    arch = {"width": 8, "hidden": 16, "size": 64, "max_ev": 3.0, "in_channels": 8, "global_features": True}
    pol = Policy(actor, arch, {"segments": 4})
    again = Policy.load(pol.save(tmp_path / "g.pt"))
    assert again.actor.global_features and again.model_id == pol.model_id
    s = batch[:2]
    assert torch.equal(again.actor(s), actor(s))
